"""Signed checkpoints: the anchor that lives outside the database.

A hash chain alone proves nothing against someone who can write the table:
they can cut off the tail, or rewrite a row and recompute every hash after it,
and the chain is again self-consistent. So the log periodically appends a line
`{"seq", "hash", "count", "time", "signature"}` to a file outside the
database, signed with an Ed25519 key that the database never sees. Verification
needs only the public key (`<key_path>.pub`), so auditors hold no secret.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from vivified.core.audit._record import canonical_json, format_time
from vivified.core.ca import KeyFileError, load_private_key


def public_key_path(key_path: Path) -> Path:
    """Where the PEM public key of `key_path` is exported."""
    return key_path.with_name(key_path.name + ".pub")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The signed claim "the log held `count` records, ending at `seq` with `hash`"."""

    seq: int
    hash: str
    count: int
    time: str
    """ISO-8601 UTC, as signed."""

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        fields = {"seq": self.seq, "hash": self.hash, "count": self.count, "time": self.time}
        return canonical_json(fields).encode("ascii")


class CheckpointSigner:
    """Signs checkpoints with an Ed25519 private key kept in a 0600 file."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def load_or_create(cls, key_path: Path) -> CheckpointSigner:
        """Load the key at `key_path`, or create it (mode 0600) if absent; make
        sure the public key is exported beside it.

        Raises KeyFileError (a VivifiedError) if group or others can access an
        existing key file — a key others can read is a key others can forge
        checkpoints with — or if it is not an Ed25519 key.
        """
        if not key_path.exists():
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_new(key_path, pem, 0o600)
        else:
            loaded = load_private_key(key_path)
            if not isinstance(loaded, ed25519.Ed25519PrivateKey):
                raise KeyFileError(
                    f"audit checkpoint key {key_path} is not an Ed25519 key", reason="KEY_FILE_INVALID"
                )
            key = loaded
        signer = cls(key)
        pub_path = public_key_path(key_path)
        pub = signer.public_key_pem()
        if not pub_path.exists() or pub_path.read_bytes() != pub:
            # Derived from the private key every time, so a stale or replaced
            # .pub never outlives a restart of the core.
            tmp = pub_path.with_name(pub_path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            _write_new(tmp, pub, 0o644)
            os.replace(tmp, pub_path)
        return signer

    def public_key_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write(
        self, path: Path, *, seq: int, hash: str, count: int, time: dt.datetime
    ) -> Checkpoint:
        """Sign a checkpoint and append it to `path` as one JSON line, fsynced
        before returning."""
        checkpoint = Checkpoint(seq=seq, hash=hash, count=count, time=format_time(time))
        signature = base64.b64encode(self._key.sign(checkpoint.payload())).decode("ascii")
        line = canonical_json({**dataclasses.asdict(checkpoint), "signature": signature})
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return checkpoint


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: the key is never, even briefly, readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key in the PEM file at `path`."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise TypeError(f"{path} is not an Ed25519 public key")
    return key


def read_checkpoints(
    path: Path, public_key: ed25519.Ed25519PublicKey, *, limit: int
) -> Iterator[tuple[int, Checkpoint | None, str]]:
    """Yield `(line_number, checkpoint, problem)` for each line within the
    first `limit` bytes of `path`, one at a time; `problem` is empty for a
    well-formed, correctly signed line, and `checkpoint` is None when the line
    cannot be parsed at all."""
    consumed = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            consumed += len(raw)
            if consumed > limit:
                return
            try:
                obj = json.loads(raw)
                checkpoint = Checkpoint(
                    seq=obj["seq"], hash=obj["hash"], count=obj["count"], time=obj["time"]
                )
                signature = base64.b64decode(obj["signature"], validate=True)
                well_typed = (
                    isinstance(checkpoint.seq, int)
                    and isinstance(checkpoint.count, int)
                    and isinstance(checkpoint.hash, str)
                    and isinstance(checkpoint.time, str)
                    and set(obj) == {"seq", "hash", "count", "time", "signature"}
                )
            except (ValueError, KeyError, TypeError):
                yield number, None, "malformed checkpoint line"
                continue
            if not well_typed:
                yield number, None, "malformed checkpoint line"
                continue
            try:
                public_key.verify(signature, checkpoint.payload())
            except InvalidSignature:
                yield number, checkpoint, "checkpoint signature is invalid"
                continue
            yield number, checkpoint, ""
