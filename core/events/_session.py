"""One open Subscribe stream: deliveries out, acks and nacks in.

Every delivery is decided when it is sent, not when the stream opened: the
subscriber must still be active, and classified payload fields its current
traits do not cover are cleared from a fresh copy of the stored event (so no
redacted or unredacted form is ever shared between subscribers). Redactions
and deliveries of classified events are audited before they are sent.

Flow control: at most `prefetch` deliveries are in flight per stream, so a
slow subscriber holds back only its own stream. An ack frees its slot when it
is read; acks are stored in batches behind it. When the stream ends, its
in-flight deliveries are nacked and go to the subscription's other consumers
(or the next stream) at once, and the stream's consumer is released.

A subscriber may send `delete` after `open`: the subscription is deleted (as by
an operator), audited, and the stream ends normally."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.chain import annotate
from vivified.core.classification import redact
from vivified.core.errors import InvalidArgument, PermissionDenied
from vivified.core.events._alerts import Alerts
from vivified.core.events._envelope import DOMAIN, PluginLookup, parse_payload
from vivified.core.events._store import Delivery, EventStore
from vivified.core.kinds import PluginStatus
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL
from vivified.events.v1.events_pb2 import Delivery as DeliveryMessage
from vivified.events.v1.events_pb2 import Event, SubscribeRequest, SubscribeResponse
from vivified.options.v1.options_pb2 import CLASSIFICATION_PII

_READ_BLOCK_SECONDS = 1.0
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def _trace_of(traceparent: str) -> str:
    """The trace id of a W3C traceparent ("" when it is not one)."""
    match = _TRACEPARENT.fullmatch(traceparent)
    return match.group(1) if match and match.group(1) != "0" * 32 else ""


@dataclass(frozen=True)
class SessionHooks:
    """Metrics callbacks: a delivery sent, and events lost to a backlog cap."""

    delivered: Callable[[str], None]
    lost: Callable[[str, int], None]
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    latency: Callable[[str, Timestamp], None] = lambda _subscription, _published: None
    """Told each delivery sent with the event's publication time (publish-to-delivery latency)."""
    """Opens a span per delivery, a child of the publish call's span."""


class SubscriptionSession:
    """Runs one consumer of one subscription until either side ends the stream."""

    def __init__(
        self,
        *,
        store: EventStore,
        lookup: PluginLookup,
        audit: AuditLog,
        hooks: SessionHooks,
        alerts: Alerts,
        plugin_id: str,
        subscription: str,
        consumer: str,
        prefetch: int,
        trace_id: str,
    ) -> None:
        self._store = store
        self._lookup = lookup
        self._audit = audit
        self._hooks = hooks
        self._alerts = alerts
        self._plugin_id = plugin_id
        self._subscription = subscription
        self._consumer = consumer
        self._prefetch = prefetch
        self._trace_id = trace_id
        self._in_flight: set[str] = set()
        self._taken: set[str] = set()  # read from the store, not yet sent: nacked too if the stream ends
        self._space = asyncio.Condition()
        self._acks: list[str] = []
        self._acks_queued = asyncio.Event()
        self._closing = False
        self._deleted = False

    async def run(
        self, requests: AsyncIterator[SubscribeRequest], write: Callable[[SubscribeResponse], Awaitable[None]]
    ) -> None:
        receiver = asyncio.ensure_future(self._receive(requests))
        sender = asyncio.ensure_future(self._send(write))
        acker = asyncio.ensure_future(self._store_acks())
        try:
            done, _ = await asyncio.wait({receiver, sender, acker}, return_when=asyncio.FIRST_COMPLETED)
            if self._deleted:
                # The store now refuses the subscription's reads and acks: the
                # end asked for, not a failure. The receiver finishes the delete.
                await receiver
            else:
                for task in done:
                    task.result()
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
            # Acks already read are stored, and what is still in flight goes back
            # to the subscription. Shielded: the stream's task may itself be cancelled here.
            self._closing = True
            self._acks_queued.set()
            ending = [acker]
            unsettled = self._in_flight | self._taken
            if unsettled:
                ending.append(asyncio.ensure_future(self._store.nack(self._subscription, sorted(unsettled))))
            await asyncio.shield(asyncio.gather(*ending, return_exceptions=True))
            # Then the consumer goes (Redis keeps one per stream otherwise); best
            # effort: one the store cannot forget now is swept by housekeeping.
            await asyncio.shield(
                asyncio.gather(self._store.release(self._subscription, self._consumer), return_exceptions=True)
            )

    async def _store_acks(self) -> None:
        """Acks are stored in batches, one store call at a time: those read while
        a call is under way go together in the next. Awaiting each ack before
        reading the next would cap a subscription's delivery rate at one store
        commit per event, below the rate publishers can append."""
        while self._acks or not self._closing:
            if not self._acks:
                await self._acks_queued.wait()
                self._acks_queued.clear()
                continue
            batch, self._acks = self._acks, []
            await self._store.ack(self._subscription, batch)

    async def _settle(self, delivery_ids: list[str]) -> list[str]:
        known = [d for d in delivery_ids if d in self._in_flight]
        async with self._space:
            self._in_flight.difference_update(known)
            self._space.notify_all()
        return known

    async def _receive(self, requests: AsyncIterator[SubscribeRequest]) -> None:
        async for request in requests:
            kind = request.WhichOneof("request")
            if kind == "ack":
                settled = await self._settle(list(request.ack.delivery_ids))
                if settled:
                    self._acks.extend(settled)
                    self._acks_queued.set()
            elif kind == "nack":
                settled = await self._settle(list(request.nack.delivery_ids))
                if settled:
                    await self._store.nack(self._subscription, settled)
            elif kind == "delete":
                self._deleted = True
                await self._store.delete(self._subscription)
                await self._record("event.subscription.delete", {})
                annotate(subscription_deleted="true")
                return
            else:
                raise InvalidArgument(
                    "after `open`, a subscriber sends only `ack`, `nack` and `delete`",
                    reason="SUBSCRIPTION_INVALID",
                    domain=DOMAIN,
                )

    async def _send(self, write: Callable[[SubscribeResponse], Awaitable[None]]) -> None:
        while True:
            async with self._space:
                await self._space.wait_for(lambda: len(self._in_flight) < self._prefetch)
                room = self._prefetch - len(self._in_flight)
            batch = await self._store.read(self._subscription, self._consumer, room, _READ_BLOCK_SECONDS)
            self._taken.update(d.delivery_id for d in batch if d.data is not None)
            for delivery in batch:
                response = await self._prepare(delivery)
                self._taken.discard(delivery.delivery_id)
                if response is None:
                    continue
                self._in_flight.add(delivery.delivery_id)
                await write(response)
                self._hooks.delivered(self._subscription)
                self._hooks.latency(self._subscription, response.delivery.event.time)

    def _traits(self) -> frozenset[str]:
        view = self._lookup(self._plugin_id)
        if view is None or view.status != PluginStatus.ACTIVE:
            raise PermissionDenied(
                f"plugin {self._plugin_id!r} is {view.status if view else 'unknown'}; its subscription stops",
                reason="PLUGIN_DISABLED",
                domain=DOMAIN,
                metadata={"rule_id": "status-gate"},
            )
        return view.granted_traits

    async def _prepare(self, delivery: Delivery) -> SubscribeResponse | None:
        traits = self._traits()
        if delivery.data is None:
            # Trimmed while pending: the subscriber never gets this event. Audited,
            # counted and alerted, like the losses the backlog monitor finds.
            lost = {"delivery_id": delivery.delivery_id, "event_type": delivery.event_type}
            await self._record("event.lost", lost)
            self._hooks.lost(self._subscription, 1)
            await self._alerts.raise_alert(
                "events_lost",
                SEVERITY_CRITICAL,
                self._subscription,
                f"subscription {self._subscription} lost a {delivery.event_type} event trimmed while it was "
                "being delivered",
                {"lost": "1", **lost},
            )
            await self._store.ack(self._subscription, [delivery.delivery_id])
            return None
        event = Event.FromString(delivery.data)
        span = self._hooks.tracer.start_span(
            "vivified.events/deliver",
            context=_PROPAGATOR.extract({"traceparent": event.traceparent}),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "vivified.subscription": self._subscription,
                "vivified.event_type": event.event_type,
                "vivified.attempt": delivery.attempt,
            },
        )
        try:
            if span.is_recording():
                # The subscriber's handler span is a child of this delivery's span.
                carrier: dict[str, str] = {}
                _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
                event.traceparent = carrier.get("traceparent", event.traceparent)
            return await self._deliver(delivery, event, traits)
        finally:
            span.end()

    async def _deliver(self, delivery: Delivery, event: Event, traits: frozenset[str]) -> SubscribeResponse:
        payload = parse_payload(event)
        cleared = redact(payload, traits)
        detail = {"event_id": event.event_id, "event_type": event.event_type, "attempt": str(delivery.attempt)}
        # A delivery belongs to the workflow that published the event: its record
        # carries the event's trace, not the trace of the subscriber's stream.
        trace_id = _trace_of(event.traceparent) or self._trace_id
        if cleared:
            event.payload.Pack(payload)
            await self._record("event.redact", {**detail, "fields": ",".join(cleared)}, trace_id)
        elif event.classification >= CLASSIFICATION_PII:
            await self._record("event.deliver", detail, trace_id)
        return SubscribeResponse(
            delivery=DeliveryMessage(
                delivery_id=delivery.delivery_id, attempt=delivery.attempt, event=event, redacted_fields=cleared
            )
        )

    async def _record(self, action: str, detail: dict[str, str], trace_id: str = "") -> None:
        await self._audit.append(
            AuditRecord(
                actor=f"plugin:{self._plugin_id}",
                action=action,
                resource=f"subscription/{self._subscription}",
                trace_id=trace_id or self._trace_id,
                detail=detail,
            )
        )
