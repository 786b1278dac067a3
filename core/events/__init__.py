"""The canonical lane: a durable, at-least-once, policy-filtered event bus."""

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

__all__ = [
    "Appended",
    "DeadLetter",
    "Delivery",
    "EventStore",
    "EventsConfig",
    "NewEvent",
    "SubscriptionLag",
    "Trimmed",
]
