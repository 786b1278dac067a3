"""What an object store backend keeps, and the operations the service needs.

Backends are synchronous (the service runs them in a worker thread) and hold
only ciphertext: sealed records and wrapped data keys, never plaintext.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    """One committed object version: its metadata and its wrapped data key."""

    owner: str
    name: str
    object_id: str
    version: int
    content_type: str
    size: int
    sha256: str
    classification: int
    retain_until_ms: int | None
    shared_with: tuple[str, ...]
    created_ms: int
    kek_id: str
    wrapped_key: bytes
    records: int

    def rewrapped(self, kek_id: str, wrapped_key: bytes) -> StoredObject:
        return replace(self, kek_id=kek_id, wrapped_key=wrapped_key)


class ObjectWriter(Protocol):
    """Receives one new version's sealed records; nothing is visible until
    `commit`, and `abort` leaves nothing behind."""

    def append(self, record: bytes) -> None: ...

    def commit(self, obj: StoredObject) -> bool:
        """Make `obj` the object's current version, atomically. False when a
        version at least as new was committed meanwhile (nothing changes)."""
        ...

    def abort(self) -> None: ...


class ObjectBackend(Protocol):
    def head(self, owner: str, object_id: str) -> StoredObject | None: ...

    def writer(self, owner: str, object_id: str, version: int) -> ObjectWriter: ...

    def records(self, obj: StoredObject) -> Iterator[bytes]:
        """The sealed records of exactly this version, in order."""
        ...

    def list(self, owner: str, prefix: str, after: str, limit: int) -> Sequence[StoredObject]:
        """Up to `limit` of the owner's objects with names > `after` starting with `prefix`, by name."""
        ...

    def delete(self, owner: str, object_id: str) -> bool: ...

    def usage(self, owner: str) -> int:
        """Bytes of content the owner's current versions hold."""
        ...

    def count(self, owner: str) -> int:
        """How many objects the owner has (current versions)."""
        ...

    def wrapped_not_under(self, kek_id: str, limit: int) -> Sequence[StoredObject]:
        """Up to `limit` current versions whose data key another key wraps."""
        ...

    def rewrap(self, obj: StoredObject, kek_id: str, wrapped_key: bytes) -> bool:
        """Replace the wrapped key of `obj` if it is still that version wrapped
        under `obj.kek_id` (compare and set): so a rewrap run again after a crash
        neither loses nor double-wraps a key."""
        ...

    def count_wraps(self, kek_id: str, n: int) -> int:
        """Reserve `n` more data-key wraps under `kek_id` (durably); the new total."""
        ...

    def close(self) -> None: ...
