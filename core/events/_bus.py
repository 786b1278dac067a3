"""The event bus assembled from its parts, as the core runs it."""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from google.protobuf.message import Message
from opentelemetry import trace

from vivified.core.audit import AuditLog
from vivified.core.chain import Principal, RateLimitConfig, TokenBuckets, current_call
from vivified.core.clock import Clock
from vivified.core.events._admin import EventAdminService
from vivified.core.events._alerts import Alerts
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._envelope import EnvelopeStamper, PluginLookup
from vivified.core.events._monitor import BacklogMonitor
from vivified.core.events._publish import Publisher
from vivified.core.events._service import Context, EventBusService
from vivified.core.events._session import SessionHooks, SubscriptionSession
from vivified.core.events._store import EventStore, SubscriptionLag


class EventMetrics(Protocol):
    """The metrics the event bus moves (implemented by `vivified.core.metrics.Metrics`)."""

    def on_event_delivered(self, subscription: str) -> None: ...

    def on_event_latency(self, subscription: str, seconds: float) -> None: ...

    def on_events_lost(self, subscription: str, count: int) -> None: ...

    def on_events_lag(self, lags: Iterable[SubscriptionLag]) -> None: ...

    def on_dead_letters_dropped(self, subscription: str, count: int) -> None: ...


def open_event_store(config: Callable[[], EventsConfig], data_dir: pathlib.Path, clock: Clock) -> EventStore:
    """Redis Streams when a Redis URL is configured, else the embedded store in
    the data dir. `config` returns the current settings; the store reads it at
    each use, so the runtime settings apply without a restart."""
    redis_url = config().redis_url
    if redis_url:
        # Imported only when configured: the embedded default never loads the Redis client.
        from vivified.core.events._redis import RedisEventStore

        return RedisEventStore(redis_url, config, clock)
    return EmbeddedEventStore(data_dir / "events.db", config, clock)


def _publish_limit(config: EventsConfig) -> RateLimitConfig:
    return RateLimitConfig(config.publish_rate, config.publish_burst)


class EventBus:
    """Store, publish path, subscription sessions, admin service and housekeeping.
    `config` returns the current settings: the publish rate, and what the store
    and monitor read, follow runtime changes; `prefetch` is read once."""

    def __init__(
        self,
        *,
        config: Callable[[], EventsConfig],
        store: EventStore,
        lookup: PluginLookup,
        identify: Callable[[Context], Principal],
        audit: AuditLog,
        record_open: Callable[[], Awaitable[None]],
        metrics: EventMetrics,
        clock: Clock,
        tracer: trace.Tracer | None = None,
    ) -> None:
        tracer = tracer or trace.NoOpTracer()
        self.store = store
        stamper = self._stamper = EnvelopeStamper(clock)
        publisher = self._publisher = Publisher(
            store=store,
            stamper=stamper,
            buckets=TokenBuckets(lambda: _publish_limit(config()), clock),
            lookup=lookup,
            audit=audit,
            tracer=tracer,
        )
        session = functools.partial(
            SubscriptionSession,
            store=store,
            lookup=lookup,
            audit=audit,
            hooks=SessionHooks(
                delivered=metrics.on_event_delivered,
                lost=metrics.on_events_lost,
                tracer=tracer,
                latency=lambda subscription, published: metrics.on_event_latency(
                    subscription, (clock.now() - published.ToDatetime(tzinfo=dt.UTC)).total_seconds()
                ),
            ),
            alerts=Alerts(store=store, stamper=stamper, audit=audit),
        )
        self.service = EventBusService(
            publisher=publisher,
            store=store,
            lookup=lookup,
            identify=identify,
            session=session,
            record_open=record_open,
            prefetch=config().prefetch,
        )
        self.admin = EventAdminService(store)
        self._stamper = stamper
        self._monitor = BacklogMonitor(
            store=store,
            stamper=stamper,
            audit=audit,
            config=config,
            on_lag=metrics.on_events_lag,
            on_lost=metrics.on_events_lost,
            on_dead_letters_dropped=metrics.on_dead_letters_dropped,
        )

    async def publish_core_event(self, event_id: str, payload: Message) -> None:
        """Store an event the core itself publishes (source `core`), e.g. a
        `SecurityAlert` raised outside the bus; returns once it is durable.
        The caller audits it."""
        await self.store.append([self._stamper.core_event(event_id, payload)])

    async def publish_core(self, payload: Message) -> None:
        """Publish a canonical event as the core (source `core`): stored and
        audited by the same path as a plugin's, under the trace of the call
        being served. Raises Unavailable when the store cannot take it."""
        call = current_call()
        await self._publisher.publish_core(payload, call.trace_id if call is not None else "")

    async def start(self) -> None:
        """Open the store (raises Unavailable when it cannot be reached) and start housekeeping."""
        await self.store.start()
        self._monitor.start()

    async def stop(self) -> None:
        await self._monitor.stop()
        await self.store.close()
