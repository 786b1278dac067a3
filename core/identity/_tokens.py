"""Signed JWTs (JWS compact, HS256) for access and MFA tokens.

Verification is strict and table-driven (SECURITY B1–B4):
- exactly three base64url segments and a non-empty signature;
- the header may hold only `alg`, `typ` and `kid`: `crit`, `jku`, `x5u`,
  `jwk`, `x5c` or anything else rejects the token — nothing in a header
  ever drives a lookup;
- `kid` must name a key in memory, and `alg` must equal that key's fixed
  algorithm (so `none`, `NONE` or a swapped algorithm never verify);
- `typ` must be the type the caller expects (an MFA token is no access token);
- `iss` and `aud` must match exactly; `exp`, `nbf`, `iat` must be integers,
  checked against the injected clock with the configured leeway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


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


class TokenSigner:
    """Signs and verifies the core's tokens with the current key."""

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, clock: Clock, leeway_seconds: int) -> None:
        self._key = key
        self._keys = {key.kid: key}
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._leeway = leeway_seconds

    def now(self) -> int:
        return int(self._clock.now().timestamp())

    def issue(
        self, typ: str, subject: str, ttl_seconds: int, *, audience: str | None = None, **extra: object
    ) -> tuple[str, Claims]:
        """Sign a `typ` token for `subject`; `audience` replaces the configured
        one (delegation tokens name the plugin they are for)."""
        now = self.now()
        jti = secrets.token_urlsafe(16)
        header = {"alg": self._key.algorithm, "typ": typ, "kid": self._key.kid}
        payload = {
            "iss": self._issuer, "aud": audience or self._audience, "sub": subject, "jti": jti,
            "iat": now, "nbf": now, "exp": now + ttl_seconds, **extra,
        }
        signing_input = ".".join(
            _b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
        )
        signature = hmac.new(self._key.secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64encode(signature)}", Claims(subject, jti, now + ttl_seconds, extra)

    def verify(self, token: str, typ: str, *, audience: str | None = None) -> Claims:
        """Verify `token` as a `typ` token for `audience` (the configured one
        unless given); raise TokenError otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token is empty or too long")
        parts = token.split(".")
        if len(parts) != 3 or not parts[2] or not all(_SEGMENT.match(part) for part in parts):
            raise TokenError("token is not a signed JWT")
        header = _json_object(parts[0])
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
        expected = hmac.new(key.secret, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64decode(parts[2])):
            raise TokenError("token signature does not verify")
        payload = _json_object(parts[1])
        if payload.get("iss") != self._issuer or payload.get("aud") != (audience or self._audience):
            raise TokenError("token issuer or audience is wrong")
        exp, nbf, iat = (_int_claim(payload, name) for name in ("exp", "nbf", "iat"))
        subject, jti = payload.get("sub"), payload.get("jti")
        if not isinstance(subject, str) or not subject or not isinstance(jti, str) or not jti:
            raise TokenError("token lacks a subject or id")
        now = self.now()
        if now > exp + self._leeway:
            raise TokenError("token has expired", reason="TOKEN_EXPIRED")
        if nbf > now + self._leeway or iat > now + self._leeway:
            raise TokenError("token is not valid yet")
        extra = {k: v for k, v in payload.items() if k not in ("iss", "aud", "sub", "jti", "iat", "nbf", "exp")}
        return Claims(subject, jti, exp, extra)
