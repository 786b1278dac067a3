"""The default backend: a directory in the data dir (`<data_dir>/objects`).

`<owner>/<object id>/v<version>.blob` holds one version's sealed records,
each prefixed by its 4-byte length; `meta.json` beside it names the current
version and holds its wrapped data key. A write goes to an exclusive temp
file, is fsynced and renamed into place; then `meta.json` is replaced the
same way, which is the commit; then older blobs are removed. A crash leaves
either the old version or the new one, and at worst a stray temp or blob file
that no `meta.json` names. One core process uses a directory (several
replicas use the database backend); `vivified storage rewrap` may run beside it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import pathlib
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from vivified.core.ca import atomic_write
from vivified.core.storage._backend import StoredObject
from vivified.core.storage._errors import integrity_failed

_LEN = struct.Struct(">I")
_META = "meta.json"


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_json(obj: StoredObject) -> bytes:
    data: dict[str, Any] = {**obj.__dict__, "wrapped_key": base64.b64encode(obj.wrapped_key).decode()}
    data["shared_with"] = list(obj.shared_with)
    return json.dumps(data, sort_keys=True).encode()


def _from_json(raw: bytes) -> StoredObject:
    data = json.loads(raw)
    data["wrapped_key"] = base64.b64decode(data["wrapped_key"])
    data["shared_with"] = tuple(data["shared_with"])
    return StoredObject(**data)


class _DirectoryWriter:
    def __init__(self, backend: DirectoryBackend, folder: pathlib.Path, version: int) -> None:
        self._backend = backend
        self._folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._final = folder / f"v{version}.blob"
        self._tmp = folder / f".v{version}.{secrets.token_hex(8)}.tmp"
        fd = os.open(self._tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "wb")

    def append(self, record: bytes) -> None:
        self._file.write(_LEN.pack(len(record)))
        self._file.write(record)

    def commit(self, obj: StoredObject) -> bool:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        with self._backend.locked():
            current = self._backend.head(obj.owner, obj.object_id)
            if current is not None and current.version >= obj.version:
                self._tmp.unlink(missing_ok=True)
                return False
            os.replace(self._tmp, self._final)
            atomic_write(self._folder / _META, _to_json(obj), 0o600)
            _fsync_dir(self._folder)  # both renames durable
            self._backend.used(obj.owner, obj.size - (current.size if current is not None else 0))
        for stale in self._folder.glob("v*.blob"):
            if stale != self._final:
                stale.unlink(missing_ok=True)
        return True

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class DirectoryBackend:
    def __init__(self, root: pathlib.Path) -> None:
        self._root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / ".keys").mkdir(mode=0o700, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._usage: dict[str, int] = {}
        self._usage_lock = threading.Lock()
        """Bytes per owner, read from the metadata once, then kept by commit and delete."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises commits, deletes and rewraps within the core (threads)
        and against `vivified storage rewrap` running beside it (flock)."""
        with self._thread_lock, (self._root / ".lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _folder(self, owner: str, object_id: str) -> pathlib.Path:
        return self._root / owner / object_id

    def head(self, owner: str, object_id: str) -> StoredObject | None:
        try:
            return _from_json((self._folder(owner, object_id) / _META).read_bytes())
        except FileNotFoundError:
            return None

    def writer(self, owner: str, object_id: str, version: int) -> _DirectoryWriter:
        return _DirectoryWriter(self, self._folder(owner, object_id), version)

    def records(self, obj: StoredObject) -> Iterator[bytes]:
        path = self._folder(obj.owner, obj.object_id) / f"v{obj.version}.blob"
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise integrity_failed(obj.object_id) from None
        with handle:
            while head := handle.read(_LEN.size):
                if len(head) != _LEN.size:
                    raise integrity_failed(obj.object_id)
                (length,) = _LEN.unpack(head)
                record = handle.read(length)
                if len(record) != length:
                    raise integrity_failed(obj.object_id)
                yield record

    def _owned(self, owner: str) -> list[StoredObject]:
        folder = self._root / owner
        if not folder.is_dir():
            return []
        found = []
        for meta in folder.glob(f"*/{_META}"):
            try:
                found.append(_from_json(meta.read_bytes()))
            except FileNotFoundError:
                continue
        return found

    def list(self, owner: str, prefix: str, after: str, limit: int) -> Sequence[StoredObject]:
        chosen = sorted(
            (o for o in self._owned(owner) if o.name.startswith(prefix) and o.name > after), key=lambda o: o.name
        )
        return chosen[:limit]

    def delete(self, owner: str, object_id: str) -> bool:
        folder = self._folder(owner, object_id)
        with self.locked():
            current = self.head(owner, object_id)
            try:
                (folder / _META).unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(folder)
            if current is not None:
                self.used(owner, -current.size)
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
        folder.rmdir()
        return True

    def usage(self, owner: str) -> int:
        with self._usage_lock:
            if owner not in self._usage:
                self._usage[owner] = sum(o.size for o in self._owned(owner))
            return self._usage[owner]

    def used(self, owner: str, delta: int) -> None:
        """Adjust the cached usage of `owner` (called by commits)."""
        with self._usage_lock:
            if owner in self._usage:
                self._usage[owner] += delta

    def count(self, owner: str) -> int:
        return len(self._owned(owner))

    def wrapped_not_under(self, kek_id: str, limit: int) -> Sequence[StoredObject]:
        found: list[StoredObject] = []
        for meta in sorted(self._root.glob(f"*/*/{_META}")):
            obj = _from_json(meta.read_bytes())
            if obj.kek_id != kek_id:
                found.append(obj)
                if len(found) >= limit:
                    break
        return found

    def rewrap(self, obj: StoredObject, kek_id: str, wrapped_key: bytes) -> bool:
        with self.locked():
            current = self.head(obj.owner, obj.object_id)
            if current is None or current.version != obj.version or current.kek_id != obj.kek_id:
                return False
            atomic_write(
                self._folder(obj.owner, obj.object_id) / _META, _to_json(current.rewrapped(kek_id, wrapped_key)), 0o600
            )
            return True

    def count_wraps(self, kek_id: str, n: int) -> int:
        path = self._root / ".keys" / f"{kek_id}.wraps"
        with self.locked():
            try:
                count = int(path.read_text()) + n
            except FileNotFoundError:
                count = n
            atomic_write(path, str(count).encode(), 0o600)
        return count

    def close(self) -> None:
        return None
