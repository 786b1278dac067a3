"""`runtime.storage`: the core's encrypted object store, from a plugin.

    meta = await runtime.storage.put("contracts/ada.pdf", pdf_bytes, content_type="application/pdf",
                                     classification=Classification.CLASSIFICATION_PII)
    data = await runtime.storage.get("contracts/ada.pdf")
    async for chunk in runtime.storage.stream("contracts/ada.pdf"):   # large objects
        ...
    page = await runtime.storage.list(prefix="contracts/")
    await runtime.storage.delete("contracts/ada.pdf")

`put` takes bytes or an async iterator of chunks (then `size` is required: the
core checks it against the size limit and quota before any chunk is sent).
Errors are `VivifiedSDKError`s carrying the core's reason (OBJECT_NOT_FOUND,
OBJECT_TRAIT_REQUIRED, STORAGE_QUOTA_EXCEEDED, OBJECT_INTEGRITY_FAILED, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

import grpc

from vivified.options.v1 import options_pb2
from vivified.sdk._calls import DELEGATION_HEADER
from vivified.sdk._errors import from_rpc_error
from vivified.sdk._trace import trace_metadata
from vivified.storage.v1 import object_store_pb2 as pb
from vivified.storage.v1 import object_store_pb2_grpc

CHUNK_BYTES = 256 * 1024


def _metadata(on_behalf_of: str) -> tuple[tuple[str, str], ...]:
    """Trace context, and the delegation token of the user the plugin acts for
    (`delegation_of(context)`): the core then requires the user's traits too."""
    return trace_metadata() + (((DELEGATION_HEADER, on_behalf_of),) if on_behalf_of else ())


class ObjectStoreClient:
    def __init__(self, channel: Callable[[], grpc.aio.Channel]) -> None:
        self._channel = channel

    async def put(
        self,
        name: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size: int | None = None,
        content_type: str = "application/octet-stream",
        classification: options_pb2.Classification.ValueType = options_pb2.CLASSIFICATION_INTERNAL,
        shared_with: Sequence[str] = (),
        timeout: float | None = None,
        on_behalf_of: str = "",
    ) -> pb.ObjectMetadata:
        if isinstance(data, bytes):
            size = len(data) if size is None else size
        elif size is None:
            raise ValueError("size is required when data is streamed")
        header = pb.PutObjectHeader(
            name=name, content_type=content_type, size=size, classification=classification, shared_with=shared_with
        )

        async def messages() -> AsyncIterator[pb.PutObjectRequest]:
            yield pb.PutObjectRequest(header=header)
            if isinstance(data, bytes):
                for start in range(0, len(data), CHUNK_BYTES):
                    yield pb.PutObjectRequest(chunk=data[start : start + CHUNK_BYTES])
            else:
                async for chunk in data:
                    yield pb.PutObjectRequest(chunk=chunk)

        try:
            reply: pb.PutObjectResponse = await object_store_pb2_grpc.ObjectStoreServiceStub(self._channel()).PutObject(
                messages(), timeout=timeout, metadata=_metadata(on_behalf_of)
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return reply.metadata

    async def stream(
        self, name: str, *, owner: str = "", timeout: float | None = None, on_behalf_of: str = ""
    ) -> AsyncIterator[bytes]:
        """The object's content in chunks (nothing arrives unless all of it authenticated)."""
        call = object_store_pb2_grpc.ObjectStoreServiceStub(self._channel()).GetObject(
            pb.GetObjectRequest(name=name, owner_plugin=owner), timeout=timeout, metadata=_metadata(on_behalf_of)
        )
        try:
            async for message in call:
                if message.WhichOneof("part") == "chunk":
                    yield message.chunk
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None

    async def get(self, name: str, *, owner: str = "", timeout: float | None = None, on_behalf_of: str = "") -> bytes:
        """The whole object; `owner` for an object another plugin shared with this one."""
        return b"".join(
            [chunk async for chunk in self.stream(name, owner=owner, timeout=timeout, on_behalf_of=on_behalf_of)]
        )

    async def head(
        self, name: str, *, owner: str = "", timeout: float | None = None, on_behalf_of: str = ""
    ) -> pb.ObjectMetadata:
        try:
            reply: pb.HeadObjectResponse = await object_store_pb2_grpc.ObjectStoreServiceStub(
                self._channel()
            ).HeadObject(
                pb.HeadObjectRequest(name=name, owner_plugin=owner), timeout=timeout, metadata=_metadata(on_behalf_of)
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return reply.metadata

    async def list(
        self,
        *,
        prefix: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        on_behalf_of: str = "",
    ) -> pb.ListObjectsResponse:
        try:
            reply: pb.ListObjectsResponse = await object_store_pb2_grpc.ObjectStoreServiceStub(
                self._channel()
            ).ListObjects(
                pb.ListObjectsRequest(prefix=prefix, page_size=page_size, page_token=page_token),
                timeout=timeout,
                metadata=_metadata(on_behalf_of),
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return reply

    async def delete(self, name: str, *, timeout: float | None = None, on_behalf_of: str = "") -> None:
        try:
            await object_store_pb2_grpc.ObjectStoreServiceStub(self._channel()).DeleteObject(
                pb.DeleteObjectRequest(name=name), timeout=timeout, metadata=_metadata(on_behalf_of)
            )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
