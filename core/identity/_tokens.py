"""Signed JWTs (JWS compact, HS256) for access, MFA and delegation tokens.

PyJWT signs and verifies them, with the algorithm pinned to the key's own
(`algorithms=[key.algorithm]`), every claim required (`iss`, `aud`, `sub`,
`jti`, `iat`, `nbf`, `exp`), the issuer and audience matched exactly
(`strict_aud`: one string, no list) and the minimum HMAC key length enforced.
Before PyJWT sees a token, the checks it does not make (SECURITY B1–B4):
- at most 4096 characters, exactly three base64url segments, a non-empty signature;
- header and payload are JSON objects without a duplicate key (PyJWT's
  `json.loads` would keep the last one silently);
- the header may hold only `alg`, `typ` and `kid`: `crit`, `jku`, `x5u`,
  `jwk`, `x5c`, `b64` or anything else rejects the token — nothing in a
  header ever drives a lookup;
- `kid` must name a key in memory, `alg` must equal that key's fixed
  algorithm (so `none`, `NONE` or a swapped algorithm never verify) and
  `typ` the type the caller expects (an MFA token is no access token).
After it, the time claims: `exp`, `nbf`, `iat` must be JSON integers (PyJWT
would take `9.5` or `true` through `int()`), checked against the injected
clock with the explicit leeway: valid until `exp + leeway` inclusive, not
before `nbf - leeway` or `iat - leeway`. PyJWT's own time checks are off
because they read the system clock, which the core's tests replace.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from vivified.core.clock import Clock
from vivified.core.errors import Unauthenticated
from vivified.core.identity._keys import SigningKey

ACCESS_TYPE = "at+jwt"
MFA_TYPE = "vivified-mfa+jwt"
DELEGATION_TYPE = "vivified-delegation+jwt"
MAX_TOKEN_CHARS = 4096
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
_DOMAIN = "vivified.identity"


class TokenError(Unauthenticated):
    """A token that does not verify; reason TOKEN_INVALID or TOKEN_EXPIRED."""

    def __init__(self, message: str, reason: str = "TOKEN_INVALID") -> None:
        super().__init__(message, reason=reason, domain=_DOMAIN)


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    subject: str
    token_id: str
    expires_at: int
    extra: Mapping[str, Any]


def _b64decode(segment: str) -> bytes:
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise TokenError("token is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token is not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TokenError("token has a duplicate JSON key")
        out[key] = value
    return out


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise TokenError("token segment is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError("token segment is not a JSON object")
    return value


def _int_claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    # bool is an int in Python; a JSON true is no timestamp.
    if type(value) is not int:
        raise TokenError(f"token claim {name!r} is missing or not an integer")
    return value


_TIME_CLAIMS = ("exp", "nbf", "iat")
_REQUIRED = ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"]
_STANDARD = frozenset(_REQUIRED)
# Signature, algorithm, presence of every claim, exact iss and aud (a single
# string), string sub and jti. Time claims are checked here, on our clock.
_PYJWT_OPTIONS: jwt.types.Options = {
    "verify_signature": True,
    "require": _REQUIRED,
    "verify_iss": True,
    "verify_aud": True,
    "strict_aud": True,
    "verify_sub": True,
    "verify_jti": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "enforce_minimum_key_length": True,
}
_WHY = (
    (jwt.InvalidSignatureError, "token signature does not verify"),
    ((jwt.InvalidIssuerError, jwt.InvalidAudienceError), "token issuer or audience is wrong"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "token algorithm does not match its key"),
)


def _refusal(exc: jwt.PyJWTError) -> TokenError:
    for kinds, message in _WHY:
        if isinstance(exc, kinds):
            return TokenError(message)
    return TokenError("token does not verify")


class TokenSigner:
    """Signs and verifies the core's tokens with the current key."""

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, clock: Clock, leeway_seconds: int) -> None:
        self._key = key
        self._keys = {key.kid: key}
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._leeway = leeway_seconds
        self._jwt = jwt.PyJWT(_PYJWT_OPTIONS)

    def now(self) -> int:
        return int(self._clock.now().timestamp())

    def issue(
        self, typ: str, subject: str, ttl_seconds: int, *, audience: str | None = None, **extra: object
    ) -> tuple[str, Claims]:
        """Sign a `typ` token for `subject`; `audience` replaces the configured
        one (delegation tokens name the plugin they are for)."""
        reserved = _STANDARD & set(extra)
        if reserved:
            raise ValueError(f"extra claims may not replace {sorted(reserved)}")
        now = self.now()
        jti = secrets.token_urlsafe(16)
        payload = {
            "iss": self._issuer,
            "aud": audience or self._audience,
            "sub": subject,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            **extra,
        }
        token = self._jwt.encode(
            payload, self._key.secret, algorithm=self._key.algorithm, headers={"typ": typ, "kid": self._key.kid}
        )
        return token, Claims(subject, jti, now + ttl_seconds, extra)

    def _key_for(self, token: str, typ: str) -> SigningKey:
        """The structural and header checks PyJWT does not make."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token is empty or too long")
        parts = token.split(".")
        if len(parts) != 3 or not parts[2] or not all(_SEGMENT.match(part) for part in parts):
            raise TokenError("token is not a signed JWT")
        header = _json_object(parts[0])
        _json_object(parts[1])  # duplicate keys refused before PyJWT parses it again
        if set(header) - _HEADER_KEYS:
            raise TokenError("token header has fields the core does not accept")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("token key id is unknown")
        if header.get("alg") != key.algorithm:
            raise TokenError("token algorithm does not match its key")
        if header.get("typ") != typ:
            raise TokenError("token is of the wrong type")
        return key

    def verify(self, token: str, typ: str, *, audience: str | None = None) -> Claims:
        """Verify `token` as a `typ` token for `audience` (the configured one
        unless given); raise TokenError otherwise."""
        key = self._key_for(token, typ)
        try:
            payload: dict[str, Any] = self._jwt.decode(
                token,
                key.secret,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                audience=audience or self._audience,
            )
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from None
        exp, nbf, iat = (_int_claim(payload, name) for name in _TIME_CLAIMS)
        subject, jti = payload["sub"], payload["jti"]
        if not subject or not jti:
            raise TokenError("token lacks a subject or id")
        now = self.now()
        if now > exp + self._leeway:
            raise TokenError("token has expired", reason="TOKEN_EXPIRED")
        if nbf > now + self._leeway or iat > now + self._leeway:
            raise TokenError("token is not valid yet")
        extra = {k: v for k, v in payload.items() if k not in _STANDARD}
        return Claims(subject, jti, exp, extra)
