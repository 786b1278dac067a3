"""`ObjectStoreService`: the object store served to plugins.

Behind the interceptor chain, which authenticates the plugin, gates its
status, applies policy (rule `plugin-object-store`) and writes the call's one
audit record; `PutObject` and `GetObject` are recorded when they end, once the
handler has named the object. The handler adds the object id, owner,
classification and size to that record (`annotate`) — never the name or any
content — and, when the plugin acts for a user (a delegation token in
`x-vivified-delegation`), `on_behalf_of: user:<id>`. A read the object's
classification refuses (OBJECT_TRAIT_REQUIRED) names the object as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vivified.core.chain import Principal, annotate
from vivified.core.errors import PermissionDenied, VivifiedError
from vivified.core.kinds import PrincipalKind
from vivified.core.registry import ACTIVE, PluginRecord
from vivified.core.storage._backend import StoredObject
from vivified.core.storage._errors import DOMAIN, request_invalid
from vivified.core.storage._store import Actor, ObjectStore, PutHeader
from vivified.options.v1 import options_pb2
from vivified.storage.v1 import object_store_pb2 as pb
from vivified.storage.v1 import object_store_pb2_grpc

CHUNK_BYTES = 256 * 1024
DRAIN_SECONDS = 1.0
PAGE_DEFAULT, PAGE_MAX = 100, 1000
DELEGATION_HEADER = "x-vivified-delegation"
VerifyDelegation = Callable[[str, str], Awaitable[tuple[str, frozenset[str]]]]
"""(token, plugin id) → (user id, traits) of the user the plugin acts for (or raises)."""


def metadata_of(obj: StoredObject) -> pb.ObjectMetadata:
    created = Timestamp()
    created.FromMilliseconds(obj.created_ms)
    meta = pb.ObjectMetadata(
        name=obj.name,
        object_id=obj.object_id,
        owner_plugin=obj.owner,
        content_type=obj.content_type,
        size=obj.size,
        sha256=obj.sha256,
        classification=obj.classification,  # type: ignore[arg-type]
        version=obj.version,
        shared_with=list(obj.shared_with),
        created_at=created,
    )
    if obj.retain_until_ms is not None:
        meta.retain_until.FromMilliseconds(obj.retain_until_ms)
    return meta


def _annotate(obj: StoredObject) -> None:
    annotate(
        resource=f"object/{obj.owner}/{obj.object_id}",
        object_id=obj.object_id,
        owner_plugin=obj.owner,
        classification=options_pb2.Classification.Name(obj.classification),  # type: ignore[arg-type]
        size=str(obj.size),
        version=str(obj.version),
    )


class ObjectStoreService(object_store_pb2_grpc.ObjectStoreServiceServicer):
    def __init__(
        self,
        store: ObjectStore,
        *,
        plugin_lookup: Callable[[str], PluginRecord | None],
        identify: Callable[[Any], Principal],
        verify_delegation: VerifyDelegation,
    ) -> None:
        self._store = store
        self._lookup = plugin_lookup
        self._identify = identify
        self._verify_delegation = verify_delegation

    def footprint(self, owner: str) -> tuple[int, int]:
        """(bytes, objects) a plugin keeps in the store."""
        return self._store.footprint(owner)

    async def _actor(self, context: grpc.aio.ServicerContext[Any, Any]) -> Actor:
        principal = self._identify(context)
        record = self._lookup(principal.id) if principal.kind == PrincipalKind.PLUGIN else None
        if record is None or record.status != ACTIVE:
            raise PermissionDenied(
                "only an active plugin may use the object store",
                reason="PLUGIN_NOT_ACTIVE",
                domain=DOMAIN,
                metadata={"rule_id": "storage-access"},
            )
        declared = record.manifest.storage
        token = dict(context.invocation_metadata() or ()).get(DELEGATION_HEADER)
        user_traits = None
        if token:
            user_id, user_traits = await self._verify_delegation(str(token), record.plugin_id)
            annotate(on_behalf_of=f"user:{user_id}")
        return Actor(
            record.plugin_id,
            record.granted_traits,
            frozenset(declared.share_with),
            frozenset(declared.read_from),
            user_traits,
        )

    async def PutObject(
        self, request_iterator: AsyncIterator[pb.PutObjectRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutObjectResponse:
        actor = await self._actor(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise request_invalid("the first message of PutObject must be the header")
        h = first.header
        header = PutHeader(
            name=h.name,
            content_type=h.content_type,
            size=h.size,
            classification=h.classification,
            retain_until_ms=h.retain_until.ToMilliseconds() if h.HasField("retain_until") else None,
            shared_with=tuple(h.shared_with),
        )

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise request_invalid("only chunks may follow the header")
                yield message.chunk

        try:
            obj = await self._store.put(actor, header, chunks())
        except VivifiedError:
            await _drain(request_iterator)
            raise
        _annotate(obj)
        return pb.PutObjectResponse(metadata=metadata_of(obj))

    async def GetObject(
        self, request: pb.GetObjectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.GetObjectResponse]:
        actor = await self._actor(context)
        obj = await self._store.locate(actor, request.name, request.owner_plugin)
        _annotate(obj)  # a refusal for the classification names the object too
        self._store.admit(actor, obj)
        first = True
        pending = bytearray()
        async for part in self._store.read(obj):
            if first:
                # the whole object authenticated: only now does anything leave
                yield pb.GetObjectResponse(metadata=metadata_of(obj))
                first = False
            pending += part
            while len(pending) >= CHUNK_BYTES:
                yield pb.GetObjectResponse(chunk=bytes(pending[:CHUNK_BYTES]))
                del pending[:CHUNK_BYTES]
        if first:
            yield pb.GetObjectResponse(metadata=metadata_of(obj))
        if pending:
            yield pb.GetObjectResponse(chunk=bytes(pending))

    async def HeadObject(
        self, request: pb.HeadObjectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeadObjectResponse:
        actor = await self._actor(context)
        obj = await self._store.locate(actor, request.name, request.owner_plugin)
        _annotate(obj)  # a refusal for the classification names the object too
        self._store.admit(actor, obj)
        return pb.HeadObjectResponse(metadata=metadata_of(obj))

    async def ListObjects(
        self, request: pb.ListObjectsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListObjectsResponse:
        actor = await self._actor(context)
        if request.page_size < 0:
            raise request_invalid("page_size must not be negative")
        size = min(request.page_size or PAGE_DEFAULT, PAGE_MAX)
        after = _page_after(request.page_token)
        found = await self._store.list(actor, request.prefix, after, size + 1)
        annotate(resource=f"objects/{actor.plugin_id}", listed=str(min(len(found), size)))
        page = found[:size]
        token = _page_token(page[-1].name) if len(found) > size else ""
        return pb.ListObjectsResponse(objects=[metadata_of(o) for o in page], next_page_token=token)

    async def DeleteObject(
        self, request: pb.DeleteObjectRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteObjectResponse:
        obj = await self._store.delete(await self._actor(context), request.name)
        _annotate(obj)
        return pb.DeleteObjectResponse()


async def _drain(messages: AsyncIterator[pb.PutObjectRequest]) -> None:
    """Read and discard what the client is still sending, for at most
    DRAIN_SECONDS, before a refusal goes out. grpc-python's asyncio client
    reports INTERNAL ("Internal error from Core") instead of the server's
    status when it writes after the server ended the call (grpc/grpc#36066),
    so a refused put would otherwise often lose its reason. Nothing read here
    is kept; a client that keeps sending past the bound is cut off."""

    async def discard() -> None:
        async for _message in messages:
            pass

    with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError, VivifiedError):
        await asyncio.wait_for(discard(), DRAIN_SECONDS)


_TOKEN_PREFIX = "after:"


def _page_token(name: str) -> str:
    return (_TOKEN_PREFIX + name).encode().hex()


def _page_after(token: str) -> str:
    if not token:
        return ""
    try:
        text = bytes.fromhex(token).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise request_invalid("page_token is not one this service issued") from None
    if not text.startswith(_TOKEN_PREFIX):
        raise request_invalid("page_token is not one this service issued")
    return text[len(_TOKEN_PREFIX) :]
