"""Accepting published events: rate limit, envelope checks, durable append, audit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from google.protobuf.message import Message
from opentelemetry import trace

from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.chain import TokenBuckets
from vivified.core.errors import (
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    VivifiedError,
)
from vivified.core.events._envelope import DOMAIN, EnvelopeStamper, PluginLookup
from vivified.core.events._store import Appended, EventStore, NewEvent
from vivified.core.kinds import PluginStatus
from vivified.events.v1.events_pb2 import Event


class Publisher:
    """The one path every event takes into the store."""

    def __init__(
        self,
        *,
        store: EventStore,
        stamper: EnvelopeStamper,
        buckets: TokenBuckets,
        lookup: PluginLookup,
        audit: AuditLog,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._store = store
        self._stamper = stamper
        self._buckets = buckets
        self._lookup = lookup
        self._audit = audit

    async def store(self, events: Sequence[NewEvent]) -> Sequence[Appended]:
        """The durable append, in a span of its own (the event count only)."""
        with self._tracer.start_as_current_span("vivified.events/store", attributes={"vivified.events": len(events)}):
            return await self._store.append(list(events))

    def prepare(self, plugin_id: str, event: Event) -> NewEvent:
        """Check one event of `plugin_id` and stamp its envelope. The bucket is
        keyed by plugin, not by connection, so reconnecting does not reset it."""
        publisher = self._lookup(plugin_id)
        if publisher is None or publisher.status != PluginStatus.ACTIVE:
            raise PermissionDenied(
                f"plugin {plugin_id!r} may not publish",
                reason="PLUGIN_DISABLED",
                domain=DOMAIN,
                metadata={"rule_id": "status-gate"},
            )
        if not self._buckets.take(plugin_id):
            raise ResourceExhausted(
                f"plugin {plugin_id!r} exceeded its publish rate; retry later",
                reason="RATE_LIMITED",
                domain=DOMAIN,
                metadata={"rule_id": "event-publish-rate"},
            )
        return self._stamper.accept(plugin_id, publisher, event)

    async def publish_batch(
        self, plugin_id: str, events: Sequence[Event], trace_id: str
    ) -> list[Appended | VivifiedError]:
        """Check, store and audit a streamed batch; one outcome per event, in
        order. Refused events get a deny record with their reason and rule,
        stored ones an allow record; all share one audit group commit."""
        by_index: dict[int, Appended | VivifiedError] = {}
        accepted: list[tuple[int, NewEvent]] = []
        for index, event in enumerate(events):
            try:
                accepted.append((index, self.prepare(plugin_id, event)))
            except VivifiedError as exc:
                by_index[index] = exc
        if accepted:
            try:
                results: Sequence[Appended | VivifiedError] = await self.store([e for _, e in accepted])
            except Unavailable as exc:
                results = [exc] * len(accepted)
            by_index.update((index, result) for (index, _), result in zip(accepted, results, strict=True))
        outcomes = [by_index[index] for index in range(len(events))]
        await asyncio.gather(
            *(
                self._audit.append(_record(plugin_id, event, outcome, trace_id))
                for event, outcome in zip(events, outcomes, strict=True)
            )
        )
        return outcomes

    async def publish_core(self, payload: Message, trace_id: str) -> Appended:
        """Store one event the core itself publishes (source `core`, e.g. a
        `UserCreated` after an administrator created a user) and write its one
        `event.publish` audit record, as for a plugin's event. Raises
        Unavailable when the store cannot take it (nothing is then audited as stored)."""
        event = self._stamper.core_event(f"core-{uuid.uuid4().hex}", payload)
        try:
            (result,) = await self._store.append([event])
        except Unavailable as exc:
            await self._audit.append(_core_record(event.event_type, event.event_id, exc, trace_id))
            raise
        await self._audit.append(_core_record(event.event_type, event.event_id, result, trace_id))
        return result


def _core_record(event_type: str, event_id: str, outcome: Appended | VivifiedError, trace_id: str) -> AuditRecord:
    if isinstance(outcome, VivifiedError):
        return AuditRecord(
            actor="core:core",
            action="event.publish",
            resource=f"event/{event_type}",
            decision="allow",
            reason=outcome.reason,
            outcome=outcome.code.name,
            trace_id=trace_id,
            detail={"event_id": event_id},
        )
    return AuditRecord(
        actor="core:core",
        action="event.publish",
        resource=f"event/{event_type}",
        trace_id=trace_id,
        detail={"event_id": event_id, "position": outcome.position, "duplicate": str(outcome.duplicate).lower()},
    )


def _record(plugin_id: str, event: Event, outcome: Appended | VivifiedError, trace_id: str) -> AuditRecord:
    detail = {"event_id": event.event_id[:128]}
    if isinstance(outcome, VivifiedError):
        return AuditRecord(
            actor=f"plugin:{plugin_id}",
            action="event.publish",
            resource=f"event/{event.event_type[:200]}",
            decision="deny" if outcome.is_denial else "allow",
            reason=outcome.reason,
            rule_id=outcome.metadata.get("rule_id", ""),
            outcome=outcome.code.name,
            trace_id=trace_id,
            detail=detail,
        )
    return AuditRecord(
        actor=f"plugin:{plugin_id}",
        action="event.publish",
        resource=f"event/{event.event_type}",
        trace_id=trace_id,
        detail={**detail, "position": outcome.position, "duplicate": str(outcome.duplicate).lower()},
    )
