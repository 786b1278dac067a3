"""Envelope encryption of objects (catalogue F1–F3).

Each object version gets a fresh 256-bit data key. Its content is sealed in
records of at most `RECORD_BYTES` with AES-256-GCM; record i's nonce is i as
a 96-bit big-endian counter — unique because the key is never reused — and
its associated data binds owner, object id, version, i and whether it is the
last record. So a record moved to another object, owner or version, reordered,
or a truncated object, fails authentication, and so does any flipped byte.

The data key is wrapped by the key-encryption key of the core's keyring (the
secrets keyring plugin configuration uses: the first key wraps, every key
unwraps, so a key added in front rotates), with a random nonce and the same
owner/object/version binding. Random nonces are safe for at most 2^32
encryptions under one key (NIST SP 800-38D); the store counts the data keys
each key-encryption key has wrapped and refuses to wrap more than
`WRAP_LIMIT` (2^30) under one key, well before that bound.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage._errors import integrity_failed, key_unknown

RECORD_BYTES = 64 * 1024
TAG_BYTES = 16
WRAP_LIMIT = 2**30
_WRAP_AAD = b"vivified-object-key/v1\x00"
_RECORD_AAD = b"vivified-object-record/v1\x00"


@dataclass(frozen=True)
class ObjectRef:
    """Which object version a key or record belongs to."""

    owner: str
    object_id: str
    version: int

    def aad(self, prefix: bytes) -> bytes:
        return prefix + self.owner.encode() + b"\x00" + self.object_id.encode() + b"\x00" + str(self.version).encode()


def new_data_key() -> bytes:
    return os.urandom(32)


def wrap(keyring: SecretsKeyring, ref: ObjectRef, data_key: bytes) -> tuple[str, bytes]:
    """(key id, wrapped key) under the keyring's primary key."""
    return keyring.seal_bytes(ref.aad(_WRAP_AAD), data_key)


def unwrap(keyring: SecretsKeyring, ref: ObjectRef, kid: str, wrapped: bytes) -> bytes:
    if not keyring.has_key(kid):
        raise key_unknown(ref.object_id, kid)
    try:
        return keyring.open_bytes(kid, ref.aad(_WRAP_AAD), wrapped)
    except (InvalidTag, ValueError):
        raise integrity_failed(ref.object_id) from None


class _Records:
    def __init__(self, data_key: bytes, ref: ObjectRef) -> None:
        self._aead = AESGCM(data_key)
        self._aad = ref.aad(_RECORD_AAD)
        self.ref = ref

    def _nonce_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        return index.to_bytes(12, "big"), self._aad + b"\x00" + index.to_bytes(8, "big") + (
            b"\x01" if final else b"\x00"
        )


class Sealer(_Records):
    """Seals an object's records in order."""

    def __init__(self, data_key: bytes, ref: ObjectRef) -> None:
        super().__init__(data_key, ref)
        self.records = 0

    def seal(self, plaintext: bytes, *, final: bool) -> bytes:
        nonce, aad = self._nonce_aad(self.records, final)
        self.records += 1
        return self._aead.encrypt(nonce, plaintext, aad)


class Opener(_Records):
    """Opens record i of an object that has `count` records."""

    def __init__(self, data_key: bytes, ref: ObjectRef, count: int) -> None:
        super().__init__(data_key, ref)
        self._count = count

    def open(self, index: int, record: bytes) -> bytes:
        if index >= self._count:
            raise integrity_failed(self.ref.object_id)
        nonce, aad = self._nonce_aad(index, index == self._count - 1)
        try:
            return self._aead.decrypt(nonce, record, aad)
        except InvalidTag:
            raise integrity_failed(self.ref.object_id) from None
