"""The canonical lane: a durable, at-least-once, policy-filtered event bus.

EventBus           store + publish path + subscription sessions + admin + housekeeping
EventStore         the store contract; EmbeddedEventStore (SQLite in the data dir)
                   and RedisEventStore (Redis Streams) implement it
EventsConfig       delivery attempts, timeouts, dedupe window, caps, backend
"""

from vivified.core.canonical_events import CANONICAL_EVENT_TYPES
from vivified.core.events._bus import EventBus, open_event_store
from vivified.core.events._config import EventsConfig
from vivified.core.events._store import (
    Appended,
    DeadLetter,
    Delivery,
    EventStore,
    NewEvent,
    SubscriptionLag,
    Trimmed,
)
from vivified.core.events._wiring import build_events

__all__ = [
    "CANONICAL_EVENT_TYPES",
    "Appended",
    "DeadLetter",
    "Delivery",
    "EventBus",
    "EventStore",
    "EventsConfig",
    "NewEvent",
    "SubscriptionLag",
    "Trimmed",
    "build_events",
    "open_event_store",
]
