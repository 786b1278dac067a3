"""PublishStream against a loopback server that ends the stream with a refusal
while the SDK's window is full: close() raises the refusal instead of waiting
forever for window space no acknowledgement will free (seen as a hung
rate-limit test under load)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.sdk import PublishStream, ResourceExhaustedError
from vivified.sdk._events import _STREAM_WINDOW

pytestmark = pytest.mark.asyncio


class RefuseWhenWindowIsFull(events_pb2_grpc.EventBusServiceServicer):
    """Reads a full window of events without acknowledging any, then refuses."""

    async def PublishStream(
        self,
        request_iterator: AsyncIterator[events_pb2.PublishStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[events_pb2.PublishStreamResponse]:
        received = 0
        async for _ in request_iterator:
            received += 1
            if received == _STREAM_WINDOW:
                break
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "publish rate exceeded")
        yield events_pb2.PublishStreamResponse()  # never reached: makes this a streaming handler


async def test_close_raises_the_refusal_when_the_stream_ends_with_the_window_full() -> None:
    server = grpc.aio.server()
    events_pb2_grpc.add_EventBusServiceServicer_to_server(RefuseWhenWindowIsFull(), server)
    port = server.add_insecure_port("127.0.0.1:0")  # loopback only; TLS is not what is tested here
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = PublishStream(channel)
            sent = [stream.send(UserCreated(user_id=str(i))) for i in range(_STREAM_WINDOW + 200)]
            with pytest.raises(ResourceExhaustedError):
                await asyncio.wait_for(stream.close(), 10)
            assert all(isinstance(f.exception(), ResourceExhaustedError) for f in sent)
    finally:
        await server.stop(0)
