"""The token signing key: HS256, ≥ 32 random bytes, in a 0600 file in the data dir.

The core signs and verifies its own tokens, so a symmetric key is enough;
replicas share the file (a mounted secret). A key that is short, empty,
low-entropy or readable by others stops the core at start-up (SECURITY B4, K1).
Each key has an id (`kid`) and a fixed algorithm; verification looks the kid up
in this in-memory table only — a token's header never names a file, URL or row.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from vivified.core.ca import KeyFileError, atomic_write, read_secure_file
from vivified.core.errors import FailedPrecondition

MIN_KEY_BYTES = 32
ALGORITHM = "HS256"


class TokenKeyInsecure(FailedPrecondition):
    """The token key cannot be used; the core must not start."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="TOKEN_KEY_INSECURE", domain="vivified.identity")


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key with its id; the algorithm is fixed, never read from a token."""

    kid: str
    secret: bytes
    algorithm: str = ALGORITHM


def check_secret(secret: bytes) -> None:
    """Refuse a key too short or too regular to be random."""
    if len(secret) < MIN_KEY_BYTES:
        raise TokenKeyInsecure(
            f"the token key has {len(secret)} bytes; at least {MIN_KEY_BYTES} random bytes are required"
        )
    if len(set(secret)) < 8:
        raise TokenKeyInsecure("the token key is not random (too few distinct bytes); replace it")


def key_from_secret(secret: bytes) -> SigningKey:
    check_secret(secret)
    kid = hashlib.sha256(b"vivified-kid:" + secret).hexdigest()[:16]
    return SigningKey(kid=kid, secret=secret)


def read_or_create_secret(path: Path, create_bytes: int) -> bytes:
    """Read a base64url secret file, creating it (mode 0600) with
    `create_bytes` random bytes on first start; refuse an exposed file."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, base64.urlsafe_b64encode(secrets.token_bytes(create_bytes)) + b"\n", 0o600)
    try:
        raw = read_secure_file(path)
    except KeyFileError as exc:
        raise TokenKeyInsecure(exc.message) from None
    try:
        return base64.urlsafe_b64decode(raw.strip())
    except ValueError:
        raise TokenKeyInsecure(f"key file {path} is not base64url") from None


def load_or_create_key(path: Path) -> SigningKey:
    """The token signing key from its file, created on first start."""
    return key_from_secret(read_or_create_secret(path, 48))
