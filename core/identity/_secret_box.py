"""TOTP secrets at rest: AES-256-GCM under a key file kept outside the database.

The core must read a TOTP secret back to check codes, so it cannot be hashed;
sealing it means a copy of the database alone (a backup, a dump) yields no
second factors. The user id is the associated data, so a sealed secret copied
onto another user's row does not open.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vivified.core.identity._keys import (
    TokenKeyInsecure,
    check_secret,
    read_or_create_secret,
)

_PREFIX = "v1."


class SecretBox:
    """Seals and opens short secrets bound to a user id."""

    def __init__(self, key: bytes) -> None:
        check_secret(key)
        if len(key) != 32:
            raise TokenKeyInsecure("the MFA key must be exactly 32 random bytes (AES-256)")
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        return cls(read_or_create_secret(path, 32))

    def seal(self, plaintext: str, user_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), user_id.encode("utf-8"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, user_id: str) -> str:
        """The plaintext; ValueError when the value was altered or moved."""
        if not sealed.startswith(_PREFIX):
            raise ValueError("not a sealed secret")
        raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], user_id.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise ValueError("sealed secret does not open for this user") from None
