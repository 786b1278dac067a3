"""Signed checkpoints: the anchor that lives outside the database.

A hash chain alone proves nothing against someone who can write the table:
they can cut off the tail, or rewrite a row and recompute every hash after it,
and the chain is again self-consistent. So the log periodically appends a line
`{"seq", "hash", "count", "time", "signature"}` to a file outside the
database, signed with an Ed25519 key that the database never sees. Verification
needs only the public key (`<key_path>.pub`), so auditors hold no secret.

A checkpoint written at a clean stop says `"final": true`: the writer claims
no record after it. Lines written before checkpoints carried the flag have
no `final` key; they are read (and their signatures checked) as not final.
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
    final: bool | None = None
    """True for the checkpoint of a clean stop, False for any other; None only
    for a line written before the flag existed (signed without it)."""

    def payload(self) -> bytes:
        """The bytes the signature covers (the flag too, when the line has it)."""
        fields: dict[str, object] = {"seq": self.seq, "hash": self.hash, "count": self.count, "time": self.time}
        if self.final is not None:
            fields["final"] = self.final
        return canonical_json(fields).encode("ascii")

    def line(self, signature: bytes) -> str:
        """The JSON line of this checkpoint with `signature`."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return canonical_json({**fields, "signature": base64.b64encode(signature).decode("ascii")})


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
                raise KeyFileError(f"audit checkpoint key {key_path} is not an Ed25519 key", reason="KEY_FILE_INVALID")
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

    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The key that verifies this signer's checkpoints."""
        return self._key.public_key()

    def write(
        self, path: Path, *, seq: int, hash: str, count: int, time: dt.datetime, final: bool = False
    ) -> Checkpoint:
        """Sign a checkpoint and append it to `path` as one JSON line, fsynced
        before returning. `final` marks the checkpoint of a clean stop."""
        checkpoint = Checkpoint(seq=seq, hash=hash, count=count, time=format_time(time), final=final)
        line = checkpoint.line(self._key.sign(checkpoint.payload()))
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
            checkpoint, problem = parse_line(raw, public_key)
            yield number, checkpoint, problem


_FIELDS = frozenset({"seq", "hash", "count", "time", "signature"})


def parse_line(raw: bytes, public_key: ed25519.Ed25519PublicKey) -> tuple[Checkpoint | None, str]:
    """`(checkpoint, problem)` of one line, as `read_checkpoints` yields them."""
    try:
        obj = json.loads(raw)
        final = obj.get("final")
        checkpoint = Checkpoint(seq=obj["seq"], hash=obj["hash"], count=obj["count"], time=obj["time"], final=final)
        signature = base64.b64decode(obj["signature"], validate=True)
        well_typed = (
            type(checkpoint.seq) is int
            and type(checkpoint.count) is int
            and isinstance(checkpoint.hash, str)
            and isinstance(checkpoint.time, str)
            and (set(obj) == _FIELDS or (set(obj) == _FIELDS | {"final"} and isinstance(final, bool)))
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "malformed checkpoint line"
    if not well_typed:
        return None, "malformed checkpoint line"
    try:
        public_key.verify(signature, checkpoint.payload())
    except InvalidSignature:
        return checkpoint, "checkpoint signature is invalid"
    return checkpoint, ""


_TAIL_BYTES = 4096
"""A checkpoint line is about 250 bytes; the last one lies within this."""


def last_checkpoint(path: Path, public_key: ed25519.Ed25519PublicKey) -> tuple[Checkpoint | None, str] | None:
    """The last line of `path` as `(checkpoint, problem)` (see `parse_line`),
    reading only the end of the file; None when the file is absent or empty.
    A last line without its newline (a write torn by a crash) is a problem."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            f.seek(max(0, size - _TAIL_BYTES))
            end = f.read()
    except FileNotFoundError:
        return None
    if not end.endswith(b"\n"):
        return None, "last checkpoint line is incomplete (torn write)"
    lines = end[:-1].rsplit(b"\n", 1)
    if len(lines) == 1 and size > len(end):
        return None, "last checkpoint line is too long"
    return parse_line(lines[-1], public_key)
