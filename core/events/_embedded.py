"""The embedded event store: one SQLite file in the core's data directory.

Durability: WAL with `synchronous=FULL`, and an append is acknowledged only
after the transaction holding it has committed, so a `kill -9` of the core (or
a power loss) loses nothing that was acknowledged. All access runs on one
writer thread with group commit (`_sqlite_worker`): concurrent appends share one
fsync, and the event loop never waits on the disk.

An operation that does not finish within `store_timeout_seconds` (a stalled
disk) fails with UNAVAILABLE; it may still complete later, so a publisher that
retries with the same `(source, event_id)` gets the deduplicated result.

Ordering, per subscription:
- First deliveries come in append order (positions increase), across all of
  the subscription's event types: the store has one global sequence.
- A redelivery (after a nack or an ack timeout) comes when it is due, before new
  events, so it arrives after events delivered later for the first time.
- Competing consumers of one subscription each see an increasing sequence of
  first deliveries, but the subscription's events are split among them, so no
  order holds between what two consumers process.
- Replayed dead letters are delivered like due redeliveries, at the next read.

Delivery ids encode `position.generation.attempt`: an ack or nack is applied
only when it names the entry's current attempt, so a consumer that lost its
delivery to an ack timeout cannot acknowledge the redelivery someone else holds.

Caps: `trim()` deletes rows every subscription of their type has acknowledged
and discards each subscription's oldest dead letters beyond `max_dead_letters`.
A subscription over `max_backlog` loses its own oldest unacknowledged entries
(counted in `lost`); other subscriptions keep theirs. An entry forced out while
pending is delivered again with `data=None` when it next becomes due.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from vivified.core.clock import Clock
from vivified.core.events import _embedded_sql as sql
from vivified.core.events._config import EventsConfig
from vivified.core.events._guard import StoreGuard
from vivified.core.events._sqlite_worker import SqliteWorker
from vivified.core.events._store import (
    Appended,
    DeadLetter,
    Delivery,
    NewEvent,
    SubscriptionLag,
    Trimmed,
)

T = TypeVar("T")


class _Waiter:
    """A blocked read: woken by an append of one of its types, or by a nack or
    replay on its subscription."""

    def __init__(self, subscription: str, event_types: frozenset[str]) -> None:
        self.subscription = subscription
        self.event_types = event_types
        self.woken = asyncio.Event()


class EmbeddedEventStore:
    """`EventStore` on a local SQLite file (see the module docstring)."""

    def __init__(self, path: pathlib.Path, config: Callable[[], EventsConfig], clock: Clock) -> None:
        self._path = path
        self._current = config
        self._clock = clock
        self._worker = SqliteWorker(path, sql.create_schema)
        self._guard = StoreGuard(
            clock,
            config().store_timeout_seconds,
            describe=f"sqlite file {path.name}",
            failure_types=(sqlite3.Error, OSError),
        )
        self._waiters: set[_Waiter] = set()
        self._types: dict[str, frozenset[str]] = {}
        self._started = False

    @property
    def _config(self) -> EventsConfig:
        # Read at each use: the runtime settings (ack timeout, attempts, dedupe
        # window, backlog cap) may change while the core runs.
        return self._current()

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    async def start(self) -> None:
        await self._guard.run(self._worker.start)
        self._started = True

    async def close(self) -> None:
        self._started = False
        for waiter in self._waiters:
            waiter.woken.set()
        await self._worker.close()

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        if not events:
            return []
        batch = list(events)
        now, window = self._now_ms(), int(self._config.dedupe_window_seconds * 1000)
        results = await self._call(functools.partial(sql.append, events=batch, now_ms=now, window_ms=window))
        self._wake(lambda waiter: any(event.event_type in waiter.event_types for event in batch))
        return results

    async def subscribe(self, subscription: str, event_types: Sequence[str]) -> None:
        types = list(event_types)
        await self._call(
            functools.partial(
                sql.subscribe,
                subscription=subscription,
                event_types=types,
                max_per_plugin=self._config.max_subscriptions_per_plugin,
            )
        )
        self._types[subscription] = frozenset(types)

    async def delete(self, subscription: str) -> bool:
        deleted = await self._call(functools.partial(sql.delete, subscription=subscription))
        self._types.pop(subscription, None)
        # Blocked reads of it re-read at once and find it gone.
        self._wake(lambda waiter: waiter.subscription == subscription)
        return deleted

    async def release(self, subscription: str, consumer: str) -> None:
        # The embedded store keeps nothing per consumer.
        del subscription, consumer

    async def read(self, subscription: str, consumer: str, count: int, block_seconds: float) -> list[Delivery]:
        # Consumers of one subscription compete for its entries; which consumer
        # holds a delivery does not matter to the store (acks name the attempt).
        del consumer
        if count < 1:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block_seconds, 0.0)
        ack_timeout_ms = int(self._config.ack_timeout_seconds * 1000)
        while self._started:
            # Registered before the read, so an append landing between the read
            # and the wait still wakes this reader.
            waiter = _Waiter(subscription, self._types.get(subscription, frozenset()))
            self._waiters.add(waiter)
            try:
                result = await self._call(
                    functools.partial(
                        sql.read,
                        subscription=subscription,
                        count=count,
                        now_ms=self._now_ms(),
                        ack_timeout_ms=ack_timeout_ms,
                        max_attempts=self._config.max_attempts,
                    )
                )
                if subscription not in self._types:
                    self._types[subscription] = frozenset(result.event_types)
                    waiter.event_types = self._types[subscription]
                remaining = deadline - loop.time()
                if result.deliveries or remaining <= 0 or not self._started:
                    return result.deliveries
                if result.next_due_ms is not None:
                    remaining = min(remaining, max(result.next_due_ms - self._now_ms(), 0) / 1000 + 0.001)
                try:
                    await asyncio.wait_for(waiter.woken.wait(), remaining)
                except TimeoutError:
                    pass
            finally:
                self._waiters.discard(waiter)
        return []

    async def ack(self, subscription: str, delivery_ids: Sequence[str]) -> int:
        ids = list(delivery_ids)
        return await self._call(functools.partial(sql.ack, subscription=subscription, ids=ids))

    async def nack(self, subscription: str, delivery_ids: Sequence[str]) -> None:
        ids = list(delivery_ids)
        if await self._call(functools.partial(sql.nack, subscription=subscription, ids=ids)):
            self._wake(lambda waiter: waiter.subscription == subscription)

    async def dead_letters(self, subscription: str, limit: int) -> list[DeadLetter]:
        return await self._call(functools.partial(sql.dead_letters, subscription=subscription, limit=limit))

    async def replay(self, subscription: str, dead_letter_ids: Sequence[str]) -> int:
        ids = list(dead_letter_ids)
        replayed = await self._call(functools.partial(sql.replay, subscription=subscription, ids=ids))
        if replayed:
            self._wake(lambda waiter: waiter.subscription == subscription)
        return replayed

    async def lag(self) -> list[SubscriptionLag]:
        return await self._call(sql.lag)

    async def trim(self) -> Trimmed:
        now, window = self._now_ms(), int(self._config.dedupe_window_seconds * 1000)
        removed, lost = await self._call(
            functools.partial(sql.trim, max_backlog=self._config.max_backlog, now_ms=now, window_ms=window)
        )
        dropped = await self._call(
            functools.partial(sql.drop_dead_letters, max_dead_letters=self._config.max_dead_letters)
        )
        return Trimmed(removed=removed, lost=lost, dead_letters_dropped=dropped)

    async def _call(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        return await self._guard.run(functools.partial(self._worker.submit, operation))

    def _wake(self, matches: Callable[[_Waiter], bool]) -> None:
        for waiter in self._waiters:
            if matches(waiter):
                waiter.woken.set()
