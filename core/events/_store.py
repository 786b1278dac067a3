"""The event store contract both backends implement (embedded SQLite, Redis Streams).

A backend stores opaque envelope bytes; it knows nothing of protobuf, policy or
redaction. The core's event bus (service, sessions, maintenance) is written
against `EventStore` only, and one behavioural test suite runs against both
backends.

Vocabulary:
- *subscription*: a durable, named cursor over a set of event types, keyed
  `<plugin-id>/<name>` by the core so one plugin can never read another's.
- *consumer*: one open Subscribe stream; several consumers of one
  subscription share its events (competing consumers).
- *delivery*: one attempt to hand an event to a consumer. Its `delivery_id` is
  opaque and unique within the subscription; acks and nacks name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vivified.core.errors import ResourceExhausted

SUBSCRIPTION_CAP_RULE = "event-subscription-cap"


def plugin_of(subscription: str) -> str:
    """The plugin a subscription key `<plugin-id>/<name>` belongs to."""
    return subscription.partition("/")[0]


def subscription_limit(subscription: str, cap: int) -> ResourceExhausted:
    """The refusal of a new subscription beyond its plugin's cap (a rule's
    decision, so audited as a deny)."""
    return ResourceExhausted(
        f"plugin {plugin_of(subscription)!r} already holds {cap} subscriptions, the most it may; reuse one "
        "or ask an operator to delete one it no longer needs (vivified events subscriptions delete)",
        reason="SUBSCRIPTION_LIMIT",
        domain="vivified.events",
        metadata={"rule_id": SUBSCRIPTION_CAP_RULE, "cap": str(cap)},
    )


@dataclass(frozen=True)
class NewEvent:
    """An event to append. `(source, event_id)` is the idempotency key."""

    event_id: str
    event_type: str
    source: str
    data: bytes


@dataclass(frozen=True)
class Appended:
    """The acknowledgement of one append. A duplicate within the dedupe window
    returns the original event's position with `duplicate=True`. A position is
    opaque: increasing in append order within one event type, never reused, and
    in the Redis backend unique only within its event type's stream."""

    position: str
    duplicate: bool


@dataclass(frozen=True)
class Delivery:
    """One delivery of an event to a consumer. `attempt` is 1 on first delivery
    and counts every redelivery (after nack or ack timeout). `data` is None when
    the entry was trimmed while still pending: the session reports that as a
    visible loss and acks it; it is never skipped silently."""

    delivery_id: str
    event_type: str
    attempt: int
    data: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    """An event that exhausted its delivery attempts on one subscription."""

    dead_letter_id: str
    subscription: str
    event_type: str
    position: str
    attempts: int
    reason: str
    dead_at_ms: int
    data: bytes


@dataclass(frozen=True)
class SubscriptionLag:
    """Backlog of one subscription: `pending` delivered but unacknowledged,
    `undelivered` stored but not yet delivered, `lost` discarded by a cap since start."""

    subscription: str
    pending: int
    undelivered: int
    lost: int

    @property
    def backlog(self) -> int:
        return self.pending + self.undelivered


@dataclass(frozen=True)
class Trimmed:
    """What one `trim()` pass did: entries removed because every subscription had
    acknowledged them, per subscription the unacknowledged entries a cap forced
    out, and per subscription the oldest dead letters the dead-letter cap discarded."""

    removed: int
    lost: dict[str, int]
    dead_letters_dropped: dict[str, int] = field(default_factory=dict)


class EventStore(Protocol):
    """A durable, at-least-once event store."""

    async def start(self) -> None:
        """Open connections and create what is missing. Raises `Unavailable`
        (reason `EVENT_STORE_UNAVAILABLE`) when the store cannot be reached."""

    async def close(self) -> None:
        """Release everything; safe to call twice."""

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """Store events durably, in order, and return one result per event only
        after they survive a crash. A `(source, event_id)` already stored within
        the dedupe window is not stored again. Raises `Unavailable` when the
        store is unreachable (never hangs past the configured timeout)."""

    async def subscribe(self, subscription: str, event_types: Sequence[str]) -> None:
        """Create the subscription if new (it receives events appended from now
        on); raises `FailedPrecondition` (reason `SUBSCRIPTION_MISMATCH`) when it
        exists with other event types, and `ResourceExhausted` (reason
        `SUBSCRIPTION_LIMIT`, rule `event-subscription-cap`) when it is new and
        its plugin (the part before `/`) already holds `max_subscriptions_per_plugin`."""

    async def delete(self, subscription: str) -> bool:
        """Remove the subscription with its cursor, pending entries, dead letters
        and replay queue; False when it does not exist. Reads of it (from any
        consumer, on any core) then fail like reads of one never created."""

    async def release(self, subscription: str, consumer: str) -> None:
        """A consumer's stream ended: forget the consumer if it holds no pending
        entries (those it still holds go to others through the claim path and it
        is forgotten by a later `trim()`)."""

    async def read(self, subscription: str, consumer: str, count: int, block_seconds: float) -> list[Delivery]:
        """Up to `count` deliveries for this consumer: due redeliveries (nacked,
        or unacknowledged for longer than the ack timeout, attempt incremented)
        first, then new events in store order. An event whose next attempt would
        exceed `max_attempts` is moved to the subscription's dead-letter store
        instead and acknowledged. Waits up to `block_seconds` when nothing is due.
        `read`, `ack`, `nack` and `replay` raise `FailedPrecondition` (reason
        `SUBSCRIPTION_MISMATCH`) for a subscription that does not exist."""

    async def ack(self, subscription: str, delivery_ids: Sequence[str]) -> int:
        """Acknowledge deliveries; returns how many were pending. Unknown,
        malformed or already-acknowledged ids are ignored (a late ack is
        harmless), and so is an id naming an earlier attempt of an entry that was
        redelivered since: it cannot settle another consumer's delivery."""

    async def nack(self, subscription: str, delivery_ids: Sequence[str]) -> None:
        """Make deliveries due for redelivery now (ids as for `ack`)."""

    async def dead_letters(self, subscription: str, limit: int) -> list[DeadLetter]:
        """The subscription's dead letters, oldest first."""

    async def replay(self, subscription: str, dead_letter_ids: Sequence[str]) -> int:
        """Deliver these dead letters again to this subscription only (attempts
        start over) and remove them from the dead-letter store. Empty `dead_letter_ids`
        replays all. Returns how many were replayed."""

    async def lag(self) -> list[SubscriptionLag]:
        """Backlog of every subscription."""

    async def trim(self) -> Trimmed:
        """Remove entries every subscription has acknowledged; when a
        subscription's backlog exceeds `max_backlog`, force out its oldest
        unacknowledged entries and report them as lost; when it holds more than
        `max_dead_letters` dead letters, discard its oldest and report how many.
        Consumers idle longer than the ack timeout with nothing pending are forgotten."""
