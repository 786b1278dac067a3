"""Typed configuration of the event bus."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventsConfig:
    """Delivery, retention and limit settings shared by both backends."""

    redis_url: str | None = None
    """Redis Streams backend (`VIVIFIED_REDIS_URL`); default: the embedded store in the data dir."""
    ack_timeout_seconds: float = 30.0
    """A delivery not acknowledged within this time is redelivered."""
    max_attempts: int = 5
    """Deliveries of one event to one subscription before it is dead-lettered."""
    dedupe_window_seconds: float = 24 * 3600.0
    """A republished `(source, event_id)` within this window returns the original acknowledgement."""
    max_backlog: int = 100_000
    """Per subscription: unacknowledged events kept at most; beyond it the oldest are lost (reported)."""
    alert_fraction: float = 0.8
    """A `SecurityAlert` is published when a subscription's backlog passes this fraction of `max_backlog`."""
    prefetch: int = 64
    """Deliveries in flight (sent, not yet acknowledged) per Subscribe stream."""
    publish_rate: float = 2000.0
    """Events per second one plugin may publish (token bucket), across all its streams."""
    publish_burst: int = 4000
    """Burst size of the publish bucket."""
    store_timeout_seconds: float = 2.0
    """An operation on the store that takes longer fails with UNAVAILABLE."""
    max_dead_letters: int = 10_000
    """Per subscription: dead letters kept at most; beyond it the oldest are discarded (audited, alerted)."""
    max_subscriptions_per_plugin: int = 32
    """Distinct durable subscriptions one plugin may hold; opening another is refused (RESOURCE_EXHAUSTED)."""

    def __post_init__(self) -> None:
        if self.ack_timeout_seconds <= 0 or self.store_timeout_seconds <= 0:
            raise ValueError("ack_timeout_seconds and store_timeout_seconds must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.dedupe_window_seconds < 0:
            raise ValueError("dedupe_window_seconds must not be negative")
        if self.max_backlog < 1 or not 0 < self.alert_fraction < 1:
            raise ValueError("max_backlog must be positive and alert_fraction between 0 and 1")
        if self.prefetch < 1 or self.publish_rate <= 0 or self.publish_burst < 1:
            raise ValueError("prefetch, publish_rate and publish_burst must be positive")
        if self.max_dead_letters < 1 or self.max_subscriptions_per_plugin < 1:
            raise ValueError("max_dead_letters and max_subscriptions_per_plugin must be at least 1")
