"""The object store's rules, over a backend: who may put, read and share
what, the size limit and quota, and envelope encryption on the way in and out.

Every decision is made before any content moves: a put is refused on its
header (size above the limit or the quota, a classification the writer may not
hold, a share its manifest does not declare) before the first chunk is read;
a get authenticates the whole object before the first chunk leaves (so a
tampered object returns no plaintext at all).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from vivified.core.classification import required_trait
from vivified.core.clock import Clock
from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage._backend import ObjectBackend, StoredObject
from vivified.core.storage._envelope import (
    RECORD_BYTES,
    WRAP_LIMIT,
    ObjectRef,
    Opener,
    Sealer,
    new_data_key,
    unwrap,
    wrap,
)
from vivified.core.storage._errors import (
    conflict,
    integrity_failed,
    not_found,
    quota_exceeded,
    request_invalid,
    retained,
    rotation_required,
    share_not_declared,
    size_mismatch,
    too_large,
    trait_required,
)
from vivified.core.storage._names import check_name, check_owner, object_id
from vivified.options.v1 import options_pb2

T = TypeVar("T")
WRAP_BLOCK = 1024
"""Data-key wraps reserved per durable write of the per-key count."""
SINGLE_PASS_BYTES = 8 * 1024 * 1024
"""Objects up to this size are opened once into memory (never disk) and
streamed from there; larger ones are authenticated in a first pass and
opened again while streaming, so memory stays bounded."""


@dataclass(frozen=True)
class StorageLimits:
    max_object_bytes: int = 64 * 1024 * 1024
    quota_bytes: int = 1024 * 1024 * 1024
    wrap_limit: int = WRAP_LIMIT


@dataclass(frozen=True)
class Actor:
    """A plugin calling the store, and the user it acts for, if any."""

    plugin_id: str
    traits: frozenset[str]
    share_with: frozenset[str]
    read_from: frozenset[str]
    user_traits: frozenset[str] | None = None


@dataclass(frozen=True)
class PutHeader:
    name: str
    content_type: str
    size: int
    classification: int
    retain_until_ms: int | None
    shared_with: tuple[str, ...]


def _require(actor: Actor, classification: int) -> None:
    trait = required_trait(classification)
    if trait is None:
        return
    if trait not in actor.traits:
        raise trait_required(trait, f"plugin {actor.plugin_id!r}")
    if actor.user_traits is not None and trait not in actor.user_traits:
        raise trait_required(trait, "user the plugin acts for")


async def _thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


class ObjectStore:
    def __init__(
        self,
        backend: ObjectBackend,
        keyring: SecretsKeyring,
        clock: Clock,
        *,
        limits: StorageLimits | None = None,
        share_allowed: Callable[[str, str], bool],
    ) -> None:
        """`share_allowed(owner, reader)` says whether the owner's approved
        manifest still lists the reader in `storage.share_with`."""
        self._backend = backend
        self._keyring = keyring
        self._clock = clock
        self.limits = limits or StorageLimits()
        self._share_allowed = share_allowed
        self._wraps: dict[str, tuple[int, int]] = {}
        """Per key id: (wraps used, wraps reserved in the backend). Reserved in
        blocks, so counting costs one durable write per block, not per put; a
        restart forgets the unused rest of a block, which only over-counts."""
        self._wrap_lock = asyncio.Lock()

    # -- put -----------------------------------------------------------------

    def footprint(self, owner: str) -> tuple[int, int]:
        """(bytes, objects) of the owner's current versions (the storage metrics)."""
        return self._backend.usage(owner), self._backend.count(owner)

    async def put(self, actor: Actor, header: PutHeader, chunks: AsyncIterator[bytes]) -> StoredObject:
        owner = check_owner(actor.plugin_id)
        name = check_name(header.name)
        classification = header.classification or options_pb2.CLASSIFICATION_INTERNAL
        if classification not in options_pb2.Classification.values():
            raise request_invalid(f"unknown classification {classification}")
        _require(actor, classification)
        if header.size < 0:
            raise request_invalid("size must be given and not negative")
        if header.size > self.limits.max_object_bytes:
            raise too_large(header.size, self.limits.max_object_bytes)
        for reader in header.shared_with:
            if reader not in actor.share_with or reader == owner:
                raise share_not_declared(reader)
        oid = object_id(owner, name)
        current, used = await _thread(lambda: (self._backend.head(owner, oid), self._backend.usage(owner)))
        replaced = current.size if current is not None else 0
        if used - replaced + header.size > self.limits.quota_bytes:
            raise quota_exceeded(used - replaced, header.size, self.limits.quota_bytes)
        version = (current.version if current is not None else 0) + 1
        ref = ObjectRef(owner, oid, version)

        await self._count_wrap(self._keyring.primary_id)
        data_key = new_data_key()
        kek_id, wrapped = wrap(self._keyring, ref, data_key)
        sealer = Sealer(data_key, ref)
        writer = await _thread(lambda: self._backend.writer(owner, oid, version))
        digest = hashlib.sha256()
        buffer = bytearray()
        sealed = 0  # plaintext bytes sealed so far
        received = 0
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > header.size:
                    raise size_mismatch(header.size, received)
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= RECORD_BYTES:
                    part = bytes(buffer[:RECORD_BYTES])
                    del buffer[:RECORD_BYTES]
                    sealed += len(part)
                    record = sealer.seal(part, final=sealed == header.size)
                    await _thread(lambda: writer.append(record))
            if received != header.size:
                raise size_mismatch(header.size, received)
            if buffer or sealer.records == 0:
                record = sealer.seal(bytes(buffer), final=True)
                await _thread(lambda: writer.append(record))
            obj = StoredObject(
                owner=owner,
                name=name,
                object_id=oid,
                version=version,
                content_type=header.content_type or "application/octet-stream",
                size=header.size,
                sha256=digest.hexdigest(),
                classification=classification,
                retain_until_ms=header.retain_until_ms,
                shared_with=tuple(sorted(set(header.shared_with))),
                created_ms=int(self._clock.now().timestamp() * 1000),
                kek_id=kek_id,
                wrapped_key=wrapped,
                records=sealer.records,
            )
            if not await _thread(lambda: writer.commit(obj)):
                raise conflict()
            return obj
        except BaseException:
            await asyncio.shield(_thread(writer.abort))
            raise

    async def _count_wrap(self, kid: str) -> None:
        async with self._wrap_lock:
            used, reserved = self._wraps.get(kid, (0, 0))
            if used >= reserved:
                block = max(1, min(WRAP_BLOCK, self.limits.wrap_limit // 16))
                reserved = await _thread(lambda: self._backend.count_wraps(kid, block))
                used = reserved - block
            if used >= self.limits.wrap_limit:
                raise rotation_required(kid, self.limits.wrap_limit)
            self._wraps[kid] = (used + 1, reserved)

    # -- read ----------------------------------------------------------------

    async def find(self, actor: Actor, name: str, owner: str = "") -> StoredObject:
        """The object `actor` asked for, if it may see it (else OBJECT_NOT_FOUND)
        and hold its classification (else OBJECT_TRAIT_REQUIRED)."""
        obj = await self.locate(actor, name, owner)
        self.admit(actor, obj)
        return obj

    @staticmethod
    def admit(actor: Actor, obj: StoredObject) -> None:
        """Raise OBJECT_TRAIT_REQUIRED unless `actor` — the plugin and the user it
        acts for, if any — holds the trait the object's classification needs."""
        _require(actor, obj.classification)

    async def locate(self, actor: Actor, name: str, owner: str = "") -> StoredObject:
        """The object `actor` asked for, if it may see it (else OBJECT_NOT_FOUND),
        not yet checked against its classification (`admit`): the service names
        the object in the call's audit record before that check can refuse."""
        name = check_name(name)
        owner = check_owner(owner or actor.plugin_id)
        obj = await _thread(lambda: self._backend.head(owner, object_id(owner, name)))
        if obj is None:
            raise not_found()
        if owner != actor.plugin_id and not (
            owner in actor.read_from
            and actor.plugin_id in obj.shared_with
            and self._share_allowed(owner, actor.plugin_id)
        ):
            raise not_found()
        return obj

    def _opened(self, obj: StoredObject) -> Iterator[bytes]:
        ref = ObjectRef(obj.owner, obj.object_id, obj.version)
        opener = Opener(unwrap(self._keyring, ref, obj.kek_id, obj.wrapped_key), ref, obj.records)
        count = 0
        for index, record in enumerate(self._backend.records(obj)):
            yield opener.open(index, record)
            count = index + 1
        if count != obj.records:
            raise integrity_failed(obj.object_id)

    def _verify(self, obj: StoredObject) -> None:
        digest = hashlib.sha256()
        size = 0
        for plaintext in self._opened(obj):
            digest.update(plaintext)
            size += len(plaintext)
        if size != obj.size or digest.hexdigest() != obj.sha256:
            raise integrity_failed(obj.object_id)

    def _open_all(self, obj: StoredObject) -> list[bytes]:
        parts = list(self._opened(obj))
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        if sum(map(len, parts)) != obj.size or digest.hexdigest() != obj.sha256:
            raise integrity_failed(obj.object_id)
        return parts

    async def read(self, obj: StoredObject) -> AsyncIterator[bytes]:
        """The content, once all of it has been authenticated."""
        if obj.size <= SINGLE_PASS_BYTES:
            for part in await _thread(lambda: self._open_all(obj)):
                yield part
            return
        await _thread(lambda: self._verify(obj))
        opened = self._opened(obj)
        while (chunk := await _thread(lambda: next(opened, None))) is not None:
            yield chunk

    # -- list, delete ----------------------------------------------------------

    async def list(self, actor: Actor, prefix: str, after: str, limit: int) -> list[StoredObject]:
        owner = check_owner(actor.plugin_id)
        return list(await _thread(lambda: self._backend.list(owner, prefix, after, limit)))

    async def delete(self, actor: Actor, name: str) -> StoredObject:
        owner = check_owner(actor.plugin_id)
        oid = object_id(owner, check_name(name))
        obj = await _thread(lambda: self._backend.head(owner, oid))
        if obj is None:
            raise not_found()
        if obj.retain_until_ms is not None and obj.retain_until_ms > self._clock.now().timestamp() * 1000:
            raise retained(obj.object_id)
        if not await _thread(lambda: self._backend.delete(owner, oid)):
            raise not_found()
        return obj
