"""Accepting published events: rate limit, envelope checks, durable append, audit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.chain import TokenBuckets
from vivified.core.errors import PermissionDenied, ResourceExhausted
from vivified.core.events._envelope import DOMAIN, EnvelopeStamper, PluginLookup
from vivified.core.events._store import Appended, EventStore, NewEvent
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
    ) -> None:
        self._store = store
        self._stamper = stamper
        self._buckets = buckets
        self._lookup = lookup
        self._audit = audit

    def prepare(self, plugin_id: str, event: Event) -> NewEvent:
        """Check one event of `plugin_id` and stamp its envelope. The bucket is
        keyed by plugin, not by connection, so reconnecting does not reset it."""
        publisher = self._lookup(plugin_id)
        if publisher is None or publisher.status != "active":
            raise PermissionDenied(
                f"plugin {plugin_id!r} may not publish", reason="PLUGIN_DISABLED", domain=DOMAIN,
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

    async def store(self, events: Sequence[NewEvent]) -> list[Appended]:
        return await self._store.append(events)

    async def record(self, events: Sequence[NewEvent], results: Sequence[Appended], trace_id: str) -> None:
        """One audit record per event of a streamed publish; queued together, so
        they share the audit log's group commit."""
        await asyncio.gather(
            *(
                self._audit.append(
                    AuditRecord(
                        actor=f"plugin:{event.source}",
                        action="event.publish",
                        resource=f"event/{event.event_type}",
                        trace_id=trace_id,
                        detail={
                            "event_id": event.event_id,
                            "position": result.position,
                            "duplicate": str(result.duplicate).lower(),
                        },
                    )
                )
                for event, result in zip(events, results, strict=True)
            )
        )
