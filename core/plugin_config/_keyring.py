"""Secret config values at rest: AES-256-GCM under key-encryption keys kept
outside the database.

Keys come from `VIVIFIED_SECRETS_KEY` (comma-separated base64 keys) or a key
file (one base64 key per line, mode 0600; `<data_dir>/config/secrets.key` is
created on first start). Every key is exactly 32 random bytes; the first one
encrypts, all of them decrypt, so a new key is added in front and old
ciphertexts still open (rotation). Each ciphertext is stored with the id of
the key that sealed it. The associated data binds plugin id and key name, so
a ciphertext copied onto another plugin's or key's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import pathlib
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vivified.core.ca import KeyFileError, atomic_write, read_secure_file
from vivified.core.errors import FailedPrecondition

KEY_BYTES = 32
_DOMAIN = "vivified.config"
_AAD_PREFIX = b"vivified-config-secret/v1\x00"


class SecretsKeyInsecure(FailedPrecondition):
    """The secrets key cannot be used; the core must not start."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="SECRETS_KEY_INSECURE", domain=_DOMAIN)


def secret_unreadable(plugin_id: str, key: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the stored secret {key!r} of plugin {plugin_id!r} does not open with the configured secrets keys "
        "(key removed or value altered); set it again",
        reason="SECRET_UNREADABLE",
        domain=_DOMAIN,
    )


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"vivified-secrets-kid:" + key).hexdigest()[:16]


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise SecretsKeyInsecure(f"{where}: a secrets key is not base64") from None
    if len(key) != KEY_BYTES:
        raise SecretsKeyInsecure(f"{where}: a secrets key has {len(key)} bytes; exactly {KEY_BYTES} are required")
    if len(set(key)) < 8:
        raise SecretsKeyInsecure(f"{where}: a secrets key is not random (too few distinct bytes); replace it")
    return key


class SecretsKeyring:
    """Seals with the first key, opens with whichever key sealed."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretsKeyInsecure("no secrets key configured")
        self._primary = key_id(keys[0])
        self._keys = {key_id(k): AESGCM(k) for k in keys}

    @classmethod
    def from_text(cls, text: str, where: str) -> SecretsKeyring:
        parts = [p for p in text.replace(",", "\n").splitlines() if p.strip()]
        return cls([_decode(p, where) for p in parts])

    @classmethod
    def load(
        cls, *, environ_value: str | None, key_file: pathlib.Path | None, data_dir: pathlib.Path
    ) -> SecretsKeyring:
        """From the variable, else the named file (which must exist), else the
        data dir's file (created with one new key when missing)."""
        if environ_value is not None:
            return cls.from_text(environ_value, "VIVIFIED_SECRETS_KEY")
        path = key_file
        if path is None:
            path = data_dir / "config" / "secrets.key"
            if not path.exists():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n", 0o600)
        try:
            raw = read_secure_file(path)
        except KeyFileError as exc:
            raise SecretsKeyInsecure(exc.message) from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise SecretsKeyInsecure(f"secrets key file {path} is not base64 text") from None
        return cls.from_text(text, f"secrets key file {path}")

    @property
    def primary_id(self) -> str:
        return self._primary

    def has_key(self, kid: str) -> bool:
        return kid in self._keys

    def seal_bytes(self, aad: bytes, data: bytes) -> tuple[str, bytes]:
        """(primary key id, nonce + ciphertext) of `data` bound to `aad`, for
        other stores that keep key-encrypted data (the object store's data
        keys); `aad` must carry that store's own domain prefix."""
        nonce = os.urandom(12)
        return self._primary, nonce + self._keys[self._primary].encrypt(nonce, data, aad)

    def open_bytes(self, kid: str, aad: bytes, sealed: bytes) -> bytes:
        """Raises KeyError for an unknown key id and InvalidTag when `sealed`
        does not open under `aad`."""
        return self._keys[kid].decrypt(sealed[:12], sealed[12:], aad)

    @staticmethod
    def _aad(plugin_id: str, key: str) -> bytes:
        return _AAD_PREFIX + plugin_id.encode() + b"\x00" + key.encode()

    def seal(self, plugin_id: str, key: str, plaintext: str) -> tuple[str, str]:
        """(key id, base64 nonce+ciphertext)."""
        nonce = os.urandom(12)
        sealed = self._keys[self._primary].encrypt(nonce, plaintext.encode("utf-8"), self._aad(plugin_id, key))
        return self._primary, base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, plugin_id: str, key: str, kid: str, ciphertext: str) -> str:
        aead = self._keys.get(kid)
        if aead is None:
            raise secret_unreadable(plugin_id, key)
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            return aead.decrypt(raw[:12], raw[12:], self._aad(plugin_id, key)).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise secret_unreadable(plugin_id, key) from None
