"""Access/MFA token verification (SECURITY B1–B4) with an injected clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pathlib

import pytest

from vivified.core.clock import ManualClock
from vivified.core.identity import (
    ACCESS_TYPE,
    MFA_TYPE,
    TokenError,
    TokenKeyInsecure,
    TokenSigner,
    key_from_secret,
    load_or_create_key,
)
from vivified.core.identity._secret_box import SecretBox

SECRET = bytes(range(48))
KEY = key_from_secret(SECRET)


def _signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(KEY, issuer="vivified-core", audience="vivified-core", clock=clock, leeway_seconds=30)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _forge(header: dict[str, object], payload: dict[str, object], key: bytes | None = SECRET) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key is not None else b""
    return f"{signing_input}.{_b64(signature)}"


def _payload(clock: ManualClock, **changes: object) -> dict[str, object]:
    now = int(clock.now().timestamp())
    payload: dict[str, object] = {
        "iss": "vivified-core",
        "aud": "vivified-core",
        "sub": "usr_1",
        "jti": "j1",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "sid": "s1",
    }
    payload.update(changes)
    return payload


def _reason(signer: TokenSigner, token: str, typ: str = ACCESS_TYPE) -> str:
    with pytest.raises(TokenError) as caught:
        signer.verify(token, typ)
    return caught.value.reason


def test_round_trip_and_wrong_type() -> None:
    clock = ManualClock()
    signer = _signer(clock)
    token, claims = signer.issue(ACCESS_TYPE, "usr_1", 900, sid="s1")
    assert signer.verify(token, ACCESS_TYPE).extra["sid"] == "s1"
    assert claims.expires_at == int(clock.now().timestamp()) + 900
    # An access token is no MFA token and the other way round.
    assert _reason(signer, token, MFA_TYPE) == "TOKEN_INVALID"
    mfa, _ = signer.issue(MFA_TYPE, "usr_1", 300, purpose="verify")
    assert _reason(signer, mfa, ACCESS_TYPE) == "TOKEN_INVALID"


@pytest.mark.parametrize("alg", ["none", "NONE", "None", "HS512", "RS256", "EdDSA"])
def test_b1_algorithm_other_than_the_keys_is_refused(alg: str) -> None:
    clock = ManualClock()
    signer = _signer(clock)
    header = {"alg": alg, "typ": ACCESS_TYPE, "kid": KEY.kid}
    unsigned = _forge(header, _payload(clock), key=None)
    assert _reason(signer, unsigned) == "TOKEN_INVALID"  # trailing dot, empty signature
    assert _reason(signer, unsigned.rstrip(".")) == "TOKEN_INVALID"  # no trailing dot
    assert _reason(signer, _forge(header, _payload(clock))) == "TOKEN_INVALID"  # even when HMAC-signed


def test_b1_empty_or_tampered_signature() -> None:
    clock = ManualClock()
    signer = _signer(clock)
    token, _ = signer.issue(ACCESS_TYPE, "usr_1", 900, sid="s1")
    head, body, sig = token.split(".")
    assert _reason(signer, f"{head}.{body}.") == "TOKEN_INVALID"
    other = _b64(json.dumps(_payload(clock, sub="usr_admin")).encode())
    assert _reason(signer, f"{head}.{other}.{sig}") == "TOKEN_INVALID"
    assert _reason(signer, token + "A") == "TOKEN_INVALID"


@pytest.mark.parametrize("kid", ["../../dev/null", "' OR 1=1--", "unknown", "", 7, None])
def test_b2_kid_injection_is_a_plain_miss(kid: object) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": kid}
    assert _reason(_signer(clock), _forge(header, _payload(clock))) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": {"kty": "oct", "k": _b64(b"attacker-key-attacker-key-attacker!")}},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
        {"crit": ["vivified-unknown"], "vivified-unknown": 1},
    ],
)
def test_b2_b4_key_location_and_crit_headers_are_refused(extra: dict[str, object]) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid, **extra}
    # Correctly signed with the real key, still refused: the header is not trusted.
    assert _reason(_signer(clock), _forge(header, _payload(clock))) == "TOKEN_INVALID"
    attacker = b"attacker-key-attacker-key-attacker!"
    assert _reason(_signer(clock), _forge(header, _payload(clock), key=attacker)) == "TOKEN_INVALID"


def test_b3_expiry_boundaries_with_leeway() -> None:
    clock = ManualClock()
    signer = _signer(clock)
    token, _ = signer.issue(ACCESS_TYPE, "usr_1", 900, sid="s1")
    clock.advance(900 + 30)  # exactly at exp + leeway: still accepted
    signer.verify(token, ACCESS_TYPE)
    clock.advance(1)  # 1 s beyond the leeway
    assert _reason(signer, token) == "TOKEN_EXPIRED"


def test_b3_not_before_and_issued_in_the_future() -> None:
    clock = ManualClock()
    signer = _signer(clock)
    now = int(clock.now().timestamp())
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    signer.verify(_forge(header, _payload(clock, nbf=now + 30)), ACCESS_TYPE)  # within leeway
    assert _reason(signer, _forge(header, _payload(clock, nbf=now + 31))) == "TOKEN_INVALID"
    signer.verify(_forge(header, _payload(clock, iat=now + 30)), ACCESS_TYPE)
    assert _reason(signer, _forge(header, _payload(clock, iat=now + 31))) == "TOKEN_INVALID"


@pytest.mark.parametrize("exp", ["9999999999", 9999999999.5, True, None, [1]])
def test_b3_non_integer_exp(exp: object) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    assert _reason(_signer(clock), _forge(header, _payload(clock, exp=exp))) == "TOKEN_INVALID"


@pytest.mark.parametrize("claim,value", [("iss", "someone-else"), ("aud", "other"), ("aud", ["vivified-core"])])
def test_issuer_and_audience_exact(claim: str, value: object) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    assert _reason(_signer(clock), _forge(header, _payload(clock, **{claim: value}))) == "TOKEN_INVALID"


@pytest.mark.parametrize("secret", [b"", b"short-secret", b"x" * 31, b"a" * 64])
def test_b4_weak_keys_are_refused(secret: bytes) -> None:
    with pytest.raises(TokenKeyInsecure):
        key_from_secret(secret)


def test_b4_key_file_created_0600_and_exposed_file_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "identity" / "token.key"
    key = load_or_create_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(key.secret) >= 32
    assert load_or_create_key(path) == key
    path.chmod(0o644)
    with pytest.raises(TokenKeyInsecure):
        load_or_create_key(path)
    path.chmod(0o600)
    path.write_bytes(base64.urlsafe_b64encode(os.urandom(16)))
    with pytest.raises(TokenKeyInsecure):
        load_or_create_key(path)


def test_mfa_secrets_are_sealed_to_their_user(tmp_path: pathlib.Path) -> None:
    box = SecretBox.load_or_create(tmp_path / "mfa.key")
    assert ((tmp_path / "mfa.key").stat().st_mode & 0o777) == 0o600
    sealed = box.seal("GEZDGNBVGY3TQOJQ", "usr_a")
    assert "GEZDGNBVGY3TQOJQ" not in sealed and box.open(sealed, "usr_a") == "GEZDGNBVGY3TQOJQ"
    with pytest.raises(ValueError):
        box.open(sealed, "usr_b")  # copied onto another user's row
    tampered = sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB")
    with pytest.raises(ValueError):
        box.open(tampered, "usr_a")
    with pytest.raises(TokenKeyInsecure):
        SecretBox(os.urandom(16))


@pytest.mark.parametrize("where", [0, 1, 2])
def test_non_base64url_segments_are_refused_not_crashing(where: int) -> None:
    clock = ManualClock()
    signer = _signer(clock)
    parts = signer.issue(ACCESS_TYPE, "usr_1", 900, sid="s1")[0].split(".")
    parts[where] = parts[where][:4] + "é" + parts[where][4:]
    assert _reason(signer, ".".join(parts)) == "TOKEN_INVALID"


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"])
def test_b3_every_claim_is_required(claim: str) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    payload = _payload(clock)
    del payload[claim]
    assert _reason(_signer(clock), _forge(header, payload)) == "TOKEN_INVALID"
    assert _reason(_signer(clock), _forge(header, _payload(clock, **{claim: None}))) == "TOKEN_INVALID"


@pytest.mark.parametrize(("claim", "value"), [("sub", 7), ("sub", ""), ("jti", ["j"]), ("jti", "")])
def test_subject_and_id_must_be_non_empty_strings(claim: str, value: object) -> None:
    clock = ManualClock()
    header = {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    assert _reason(_signer(clock), _forge(header, _payload(clock, **{claim: value}))) == "TOKEN_INVALID"


@pytest.mark.parametrize("where", ["header", "payload"])
def test_duplicate_json_keys_are_refused_before_pyjwt(where: str) -> None:
    # PyJWT's json.loads keeps the last of two equal keys; the core refuses the token.
    clock = ManualClock()
    header = json.dumps({"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid})
    payload = json.dumps(_payload(clock))
    if where == "header":
        header = header[:-1] + ', "typ": "' + ACCESS_TYPE + '"}'
    else:
        payload = payload[:-1] + ', "sub": "usr_admin"}'
    signing_input = f"{_b64(header.encode())}.{_b64(payload.encode())}"
    token = f"{signing_input}.{_b64(hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest())}"
    assert _reason(_signer(ManualClock()), token) == "TOKEN_INVALID"


def test_issued_tokens_are_plain_hs256_jws_and_extra_claims_cannot_replace_standard_ones() -> None:
    clock = ManualClock()
    signer = _signer(clock)
    token, _ = signer.issue(ACCESS_TYPE, "usr_1", 900, sid="s1")
    head = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert head == {"alg": "HS256", "typ": ACCESS_TYPE, "kid": KEY.kid}
    for claim in ("sub", "exp", "aud"):
        with pytest.raises(ValueError):
            signer.issue(ACCESS_TYPE, "usr_1", 900, **{claim: "x"})
