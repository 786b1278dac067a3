"""Assembles the event bus for the core."""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from vivified.core.audit import AuditLog
from vivified.core.chain import Principal
from vivified.core.clock import Clock
from vivified.core.events._bus import EventBus, EventMetrics, open_event_store
from vivified.core.events._config import EventsConfig
from vivified.core.events._envelope import PluginLookup


def build_events(
    *,
    config: Callable[[], EventsConfig],
    data_dir: pathlib.Path,
    clock: Clock,
    lookup: PluginLookup,
    identify: Callable[[Any], Principal],
    audit: AuditLog,
    record_open: Callable[[], Awaitable[None]],
    metrics: EventMetrics,
    tracer: trace.Tracer | None = None,
) -> EventBus:
    """The bus on the store `config` names (Redis Streams or the embedded
    SQLite store in `data_dir`). Nothing is opened until `EventBus.start`,
    which raises Unavailable when the store cannot be reached."""
    return EventBus(
        config=config,
        store=open_event_store(config, data_dir, clock),
        lookup=lookup,
        identify=identify,
        audit=audit,
        record_open=record_open,
        metrics=metrics,
        clock=clock,
        tracer=tracer,
    )
