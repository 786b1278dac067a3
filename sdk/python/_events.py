"""Publishing and subscribing on the core's event bus (the canonical lane).

A plugin publishes canonical event messages and writes plain handler
functions for the ones it subscribes to; the SDK wraps payloads in the
envelope, acknowledges a delivery when its handler returns and asks for
redelivery when it raises. Both directions need the types declared in the
plugin's approved manifest (`publishes`, `subscribes`).

Example::

    from vivified.events.v1.canonical_pb2 import EmailQueued, UserCreated

    async def welcome(user: UserCreated, event: ReceivedEvent) -> None:
        ...  # may run more than once for one event: at-least-once delivery
        await runtime.publish(EmailQueued(email_id=..., template="welcome"))

    subscription = runtime.subscribe("welcome", {UserCreated: welcome})
    await subscription.opened()

    # many events, one stream, each acknowledged once durable
    async with runtime.publish_stream() as stream:
        for user in users:
            stream.send(UserUpdated(user_id=user))
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc
from google.protobuf.message import Message
from opentelemetry import trace

from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.sdk._conformance import ConformanceControl
from vivified.sdk._errors import (
    ConfigurationError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
    VivifiedSDKError,
    from_rpc_error,
    from_status,
)
from vivified.sdk._trace import span, trace_metadata

_log = logging.getLogger(__name__)
_STREAM_WINDOW = 1024
_ACK_GATHER_SECONDS = 0.002
_FATAL = (PermissionDeniedError, InvalidArgumentError, UnauthenticatedError)
# Refusals that reopening cannot cure (the plugin holds its most subscriptions).
_FATAL_REASONS = frozenset({"SUBSCRIPTION_LIMIT"})


def envelope(payload: Message, event_id: str | None = None) -> events_pb2.Event:
    """The canonical envelope of `payload`; the core fills in source, time, trace and classification."""
    event = events_pb2.Event(event_id=event_id or uuid.uuid4().hex, event_type=payload.DESCRIPTOR.full_name)
    event.payload.Pack(payload)
    return event


@dataclass(frozen=True)
class ReceivedEvent:
    """What a handler learns about a delivery besides the payload."""

    event: events_pb2.Event
    """The envelope: `event_id`, `source_plugin_id`, `time`, `traceparent`, `classification`."""
    attempt: int
    """1 on first delivery; higher when this event is being redelivered."""
    redacted_fields: tuple[str, ...]
    """Payload fields the core cleared because this plugin lacks the trait their classification needs."""


Handler = Callable[[Message, ReceivedEvent], Awaitable[None]]


class PublishStream:
    """Many publishes on one stream; `send` returns a future of the acknowledgement.

    A refused event (undeclared type, rate limit, unreachable store) fails
    only its own future with the typed error; the stream goes on. `close()`
    waits for every answer and raises the first refusal, if any."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = events_pb2_grpc.EventBusServiceStub(channel).PublishStream()
        self._waiting: collections.deque[asyncio.Future[events_pb2.PublishStreamResponse]] = collections.deque()
        self._first_error: VivifiedSDKError | None = None
        self._window = asyncio.Semaphore(_STREAM_WINDOW)
        self._writes: asyncio.Queue[events_pb2.PublishStreamRequest | None] = asyncio.Queue()
        self._writer = asyncio.ensure_future(self._write())
        self._tasks = [self._writer, asyncio.ensure_future(self._read())]

    def send(
        self, payload: Message, *, event_id: str | None = None
    ) -> asyncio.Future[events_pb2.PublishStreamResponse]:
        """Queue one event; the future resolves when the core acknowledges it."""
        future: asyncio.Future[events_pb2.PublishStreamResponse] = asyncio.get_running_loop().create_future()
        if self._tasks[1].done():  # the stream has ended: nothing will answer
            future.set_exception(
                self._first_error or VivifiedSDKError("the publish stream has ended", reason="STREAM_ENDED")
            )
            return future
        self._waiting.append(future)
        self._writes.put_nowait(events_pb2.PublishStreamRequest(event=envelope(payload, event_id)))
        return future

    async def _write(self) -> None:
        while (request := await self._writes.get()) is not None:
            await self._window.acquire()
            await self._call.write(request)
        await self._call.done_writing()

    async def _read(self) -> None:
        try:
            async for answer in self._call:
                self._window.release()
                future = self._waiting.popleft()
                if answer.HasField("refusal"):
                    refusal = answer.refusal
                    self._settle(future, from_status(refusal.code, refusal.reason, refusal.message, "vivified.events"))
                elif not future.done():
                    future.set_result(answer)
        except grpc.aio.AioRpcError as err:
            self._fail(from_rpc_error(err))
            return
        finally:
            # Nothing will be acknowledged any more: a writer waiting for window
            # space would wait forever, and close() with it.
            self._writer.cancel()
        self._fail(VivifiedSDKError("the publish stream ended before acknowledging every event", reason="STREAM_ENDED"))

    def _settle(self, future: asyncio.Future[events_pb2.PublishStreamResponse], error: VivifiedSDKError) -> None:
        self._first_error = self._first_error or error
        if not future.done():
            future.set_exception(error)

    def _fail(self, error: VivifiedSDKError) -> None:
        while self._waiting:
            self._settle(self._waiting.popleft(), error)

    async def close(self) -> None:
        """Finish sending and wait for every answer; raises the first refusal."""
        pending = list(self._waiting)
        self._writes.put_nowait(None)
        try:
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._first_error is not None:
            raise self._first_error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
        else:
            self._call.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Subscription:
    """A durable subscription served in the background until `close()`.

    Deliveries are handled one at a time in arrival order. A handler that
    returns acknowledges its delivery; one that raises asks for redelivery.
    The stream is reopened after transport errors, with backoff; a refusal
    (undeclared type, disabled plugin, too many subscriptions) ends the subscription and is raised by
    `opened()` / `wait_closed()`."""

    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel],
        name: str,
        handlers: Mapping[type[Message], Handler],
        control: ConformanceControl | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        if not handlers:
            raise ConfigurationError("subscribe needs at least one handler", reason="NO_HANDLERS")
        self._channel = channel
        self._name = name
        self._control = control
        self._handlers = {cls.DESCRIPTOR.full_name: (cls, handler) for cls, handler in handlers.items()}
        self._opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._deleting = False
        self._outbox: asyncio.Queue[events_pb2.SubscribeRequest] | None = None
        self._task = asyncio.ensure_future(self._run())

    async def opened(self) -> str:
        """Wait until the core confirmed the subscription; returns its full name."""
        return await asyncio.shield(self._opened)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def delete(self) -> None:
        """Delete the subscription on the core for good (its position, pending
        deliveries and dead letters) and end it; frees its place under the
        plugin's subscription cap. Opening the name again starts afresh."""
        await self.opened()
        self._deleting = True
        if self._outbox is not None:
            self._outbox.put_nowait(events_pb2.SubscribeRequest(delete=events_pb2.SubscriptionDelete()))
        await self._task

    async def wait_closed(self) -> None:
        """Wait until the subscription ends; raises the refusal that ended it."""
        await self._task

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._serve_once()
                if self._deleting:
                    return  # the core ended the stream after deleting the subscription
                delay = 0.2
            except VivifiedSDKError as exc:
                if isinstance(exc, _FATAL) or exc.reason in _FATAL_REASONS:
                    if not self._opened.done():
                        self._opened.set_exception(exc)
                        self._opened.exception()  # retrieved here; raised again by opened()
                    raise
                _log.warning("subscription %s interrupted (%s); reopening", self._name, exc.message)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)

    async def _serve_once(self) -> None:
        outbox: asyncio.Queue[events_pb2.SubscribeRequest] = asyncio.Queue()
        outbox.put_nowait(
            events_pb2.SubscribeRequest(
                open=events_pb2.SubscriptionOpen(subscription=self._name, event_types=sorted(self._handlers))
            )
        )
        if self._deleting:  # asked while the stream was being reopened
            outbox.put_nowait(events_pb2.SubscribeRequest(delete=events_pb2.SubscriptionDelete()))
        self._outbox = outbox

        acks: list[str] = []
        acks_waiting = asyncio.Event()
        call = events_pb2_grpc.EventBusServiceStub(self._channel()).Subscribe()

        async def send() -> None:
            while True:
                await call.write(await outbox.get())

        async def flush_acks() -> None:
            # Acks of deliveries handled in quick succession travel in one message.
            while True:
                await acks_waiting.wait()
                await asyncio.sleep(_ACK_GATHER_SECONDS)
                acks_waiting.clear()
                batch, acks[:] = list(acks), []
                outbox.put_nowait(events_pb2.SubscribeRequest(ack=events_pb2.Acknowledgement(delivery_ids=batch)))

        helpers = [asyncio.ensure_future(send()), asyncio.ensure_future(flush_acks())]
        try:
            # read() gives grpc.aio.EOF once the stream ends, else a SubscribeResponse; its stubs
            # type it as plain `object`, so the isinstance test both ends the loop and narrows.
            while isinstance(response := await call.read(), events_pb2.SubscribeResponse):
                if response.WhichOneof("response") == "opened":
                    if not self._opened.done():
                        self._opened.set_result(response.opened.subscription)
                    continue
                delivery = response.delivery
                if await self._handle(delivery):
                    acks.append(delivery.delivery_id)
                    acks_waiting.set()
                else:
                    outbox.put_nowait(
                        events_pb2.SubscribeRequest(
                            nack=events_pb2.NegativeAcknowledgement(delivery_ids=[delivery.delivery_id])
                        )
                    )
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Not this task being cancelled: grpc.aio cancels the calls of a
            # closed channel, as when a renewal replaces it. Reopen on the new one.
            raise VivifiedSDKError(
                "the stream's channel closed (certificate renewal)", reason="STREAM_CHANNEL_CLOSED"
            ) from None
        finally:
            for helper in helpers:
                helper.cancel()
            call.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _handle(self, delivery: events_pb2.Delivery) -> bool:
        event = delivery.event
        if self._control is not None:
            verdict = self._control.delivery(event.event_id, event.event_type, delivery.attempt)
            if verdict is not None:
                return verdict  # the conformance suite's own event (its control hook)
        if event.event_type not in self._handlers:
            _log.error(
                "delivery %s carries %s, which this subscription has no handler for",
                delivery.delivery_id,
                event.event_type,
            )
            return False
        cls, handler = self._handlers[event.event_type]
        payload = cls()
        if not event.payload.Unpack(payload):
            _log.error("delivery %s carries %s, not %s", delivery.delivery_id, event.payload.type_url, event.event_type)
            return False
        try:
            # A child of the core's delivery span; the handler's calls continue the event's trace.
            attributes: dict[str, str | int] = {
                "vivified.event_type": event.event_type,
                "vivified.subscription": self._name,
                "vivified.attempt": delivery.attempt,
            }
            with span(
                self._tracer,
                f"deliver {event.event_type}",
                trace.SpanKind.CONSUMER,
                attributes,
                parent=event.traceparent,
            ):
                await handler(payload, ReceivedEvent(event, delivery.attempt, tuple(delivery.redacted_fields)))
        except Exception:  # noqa: BLE001 - any handler failure means: deliver again
            _log.exception(
                "handler for %s failed on event %s (attempt %d)", event.event_type, event.event_id, delivery.attempt
            )
            return False
        return True


class EventClient:
    """Publish and subscribe on the current core channel."""

    def __init__(
        self,
        channel: Callable[[], grpc.aio.Channel],
        control: ConformanceControl | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._channel = channel
        self._control = control
        self._tracer = tracer or trace.NoOpTracer()

    async def publish(
        self, payload: Message, *, event_id: str | None = None, timeout: float | None = None
    ) -> events_pb2.PublishResponse:
        """Publish one event; returns once it is durable. Reusing an `event_id`
        within the core's dedupe window is a no-op that returns the original acknowledgement."""
        stub = events_pb2_grpc.EventBusServiceStub(self._channel())
        attributes = {"rpc.system": "grpc", "vivified.event_type": payload.DESCRIPTOR.full_name}
        with span(self._tracer, "vivified.events.v1.EventBusService/Publish", trace.SpanKind.PRODUCER, attributes):
            try:
                reply: events_pb2.PublishResponse = await stub.Publish(
                    events_pb2.PublishRequest(event=envelope(payload, event_id)),
                    timeout=timeout,
                    metadata=trace_metadata(),
                )
            except grpc.aio.AioRpcError as err:
                raise from_rpc_error(err) from None
        return reply

    def publish_stream(self) -> PublishStream:
        return PublishStream(self._channel())

    def subscribe(self, name: str, handlers: Mapping[type[Message], Handler]) -> Subscription:
        return Subscription(self._channel, name, handlers, self._control, self._tracer)
