"""EventBusService: Publish, PublishStream and Subscribe, served by the core.

Policy lets registered plugins reach this service; which event types each may
publish or subscribe to is decided here, per event, against the approved
manifest (exact names, no wildcards)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from vivified.core.chain import Principal, PrincipalKind, annotate, current_call
from vivified.core.errors import InvalidArgument, PermissionDenied, VivifiedError
from vivified.core.events._envelope import DOMAIN, PluginLookup, not_declared
from vivified.core.events._publish import Publisher
from vivified.core.events._session import SubscriptionSession
from vivified.core.events._store import EventStore
from vivified.events.v1 import events_pb2, events_pb2_grpc

_SUBSCRIPTION_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_STREAM_BATCH = 256
OPEN_TIMEOUT_SECONDS = 30.0

Context = grpc.aio.ServicerContext[Any, Any]


def subscription_key(plugin_id: str, name: str) -> str:
    """Subscriptions are namespaced by plugin: one plugin cannot open another's."""
    return f"{plugin_id}/{name}"


class EventBusService(events_pb2_grpc.EventBusServiceServicer):
    """The canonical lane."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        store: EventStore,
        lookup: PluginLookup,
        identify: Callable[[Context], Principal],
        session: Callable[..., SubscriptionSession],
        record_open: Callable[[], Awaitable[None]],
        prefetch: int,
    ) -> None:
        self._publisher = publisher
        self._store = store
        self._lookup = lookup
        self._identify = identify
        self._session = session
        self._record_open = record_open
        self._prefetch = prefetch

    def _plugin_id(self, context: Context) -> str:
        principal = self._identify(context)
        if principal.kind != PrincipalKind.PLUGIN:
            raise PermissionDenied("only plugins use the event bus", reason="POLICY_DENIED", domain=DOMAIN)
        return principal.id

    async def Publish(self, request: events_pb2.PublishRequest, context: Context) -> events_pb2.PublishResponse:
        plugin_id = self._plugin_id(context)
        annotate(resource=f"event/{request.event.event_type[:200]}", event_id=request.event.event_id[:128])
        event = self._publisher.prepare(plugin_id, request.event)
        (result,) = await self._publisher.store([event])
        annotate(position=result.position, duplicate=str(result.duplicate).lower())
        return events_pb2.PublishResponse(event_id=event.event_id, position=result.position, duplicate=result.duplicate)

    async def PublishStream(
        self, request_iterator: AsyncIterator[events_pb2.PublishStreamRequest], context: Context
    ) -> AsyncIterator[events_pb2.PublishStreamResponse]:
        """Events are read ahead into a queue and stored in batches (one durable
        append and one audit group commit per batch). Every event is answered,
        in order; a refused one gets a `refusal` and the stream goes on, so a
        client still writing never races the end of the call."""
        plugin_id = self._plugin_id(context)
        call = current_call()
        trace_id = call.trace_id if call is not None else ""
        # Unbounded queue, bounded read-ahead: `room` limits what is read but not
        # yet taken, and the end marker always fits, however reading ends.
        queue: asyncio.Queue[events_pb2.Event | None] = asyncio.Queue()
        room = asyncio.Semaphore(_MAX_STREAM_BATCH * 2)

        async def read_ahead() -> None:
            try:
                async for request in request_iterator:
                    await room.acquire()
                    queue.put_nowait(request.event)
            finally:
                queue.put_nowait(None)

        reader = asyncio.ensure_future(read_ahead())
        answered = refused = 0
        try:
            ended = False
            while not ended:
                batch: list[events_pb2.Event] = []
                item = await queue.get()
                while item is not None:
                    batch.append(item)
                    room.release()
                    if len(batch) >= _MAX_STREAM_BATCH or queue.empty():
                        break
                    item = queue.get_nowait()
                ended = item is None
                if not batch:
                    break
                outcomes = await self._publisher.publish_batch(plugin_id, batch, trace_id)
                for event, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, VivifiedError):
                        refused += 1
                        yield events_pb2.PublishStreamResponse(
                            event_id=event.event_id[:128],
                            refusal=events_pb2.PublishRefusal(
                                code=outcome.code.value[0], reason=outcome.reason, message=outcome.message
                            ),
                        )
                    else:
                        yield events_pb2.PublishStreamResponse(
                            event_id=event.event_id, position=outcome.position, duplicate=outcome.duplicate
                        )
                answered += len(batch)
                annotate(answered=str(answered), refused=str(refused))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if not reader.cancelled() and (error := reader.exception()) is not None:
            raise error

    # The servicer stub's return type allows only the iterator style; grpc.aio also serves a
    # handler that writes its responses with context.write and returns None, as this one does.
    async def Subscribe(  # type: ignore[override]
        self, request_iterator: AsyncIterator[events_pb2.SubscribeRequest], context: Context
    ) -> None:
        plugin_id = self._plugin_id(context)
        requests = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(requests), OPEN_TIMEOUT_SECONDS)
        except (StopAsyncIteration, TimeoutError):
            raise InvalidArgument(
                "the first message on a Subscribe stream must be `open`", reason="SUBSCRIPTION_INVALID", domain=DOMAIN
            ) from None
        if first.WhichOneof("request") != "open":
            raise InvalidArgument(
                "the first message on a Subscribe stream must be `open`", reason="SUBSCRIPTION_INVALID", domain=DOMAIN
            )
        name, types = first.open.subscription, list(first.open.event_types)
        key = subscription_key(plugin_id, name if _SUBSCRIPTION_NAME.fullmatch(name) else "?")
        annotate(resource=f"subscription/{key}", event_types=",".join(t[:200] for t in types[:32]))
        if not _SUBSCRIPTION_NAME.fullmatch(name):
            raise InvalidArgument(
                "subscription must be 1-64 characters of a-z 0-9 . _ - starting with a letter or digit",
                reason="SUBSCRIPTION_INVALID",
                domain=DOMAIN,
            )
        if not types or len(set(types)) != len(types):
            raise InvalidArgument(
                "event_types must list at least one type, each once", reason="SUBSCRIPTION_INVALID", domain=DOMAIN
            )
        subscriber = self._lookup(plugin_id)
        declared = subscriber.manifest.subscribes if subscriber is not None else ()
        for event_type in types:
            if event_type not in declared:
                raise not_declared(plugin_id, "subscribes", event_type)
        await self._store.subscribe(key, types)
        await self._record_open()
        await context.write(events_pb2.SubscribeResponse(opened=events_pb2.SubscriptionOpened(subscription=key)))
        call = current_call()
        session = self._session(
            plugin_id=plugin_id,
            subscription=key,
            consumer=uuid.uuid4().hex,
            prefetch=self._prefetch,
            trace_id=call.trace_id if call is not None else "",
        )
        await session.run(requests, context.write)
