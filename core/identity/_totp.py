"""TOTP (RFC 6238) on HOTP (RFC 4226), with a ±1 step window and replay
protection: a code is accepted only for a step later than the last one used."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

PERIOD_SECONDS = 30
DIGITS = 6
WINDOW_STEPS = 1
SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation for SHA-1


def hotp(secret: bytes, counter: int, *, digits: int = DIGITS, digest: Callable[..., Any] = hashlib.sha1) -> str:
    """RFC 4226 HOTP value of `counter`, zero-padded to `digits`."""
    mac = hmac.new(secret, counter.to_bytes(8, "big"), digest).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def time_step(epoch_seconds: float) -> int:
    return int(epoch_seconds) // PERIOD_SECONDS


def totp(
    secret: bytes, epoch_seconds: float, *, digits: int = DIGITS, digest: Callable[..., Any] = hashlib.sha1
) -> str:
    """RFC 6238 TOTP at a time (T0 = 0, X = 30 s)."""
    return hotp(secret, time_step(epoch_seconds), digits=digits, digest=digest)


def match_step(secret: bytes, code: str, epoch_seconds: float, last_used_step: int) -> int | None:
    """The step within ±1 of now whose code equals `code` and which is later
    than `last_used_step`, or None. Every candidate is compared in constant time."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = time_step(epoch_seconds)
    found = None
    for step in range(now - WINDOW_STEPS, now + WINDOW_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step), code) and step > last_used_step and found is None:
            found = step
    return found


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def encode_secret(secret: bytes) -> str:
    """Base32 without padding, as authenticator apps expect."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    """otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30"""
    label = urllib.parse.quote(f"{issuer}:{account}", safe="")
    query = urllib.parse.urlencode(
        {
            "secret": encode_secret(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": PERIOD_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"
