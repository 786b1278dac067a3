"""What the event store keeps is bounded (docs/security.md D6), on both backends:
dead letters per subscription, subscriptions per plugin, and an operator can
delete a subscription with everything kept for it."""

from __future__ import annotations

import asyncio
import time

import pytest

from support.event_backends import Backend
from vivified.core.errors import FailedPrecondition, ResourceExhausted
from vivified.core.events._store import EventStore, NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"


def event(n: int, event_type: str = "OrderPlaced") -> NewEvent:
    return NewEvent(event_id=f"e{n}", event_type=event_type, source="plugin-src", data=f"payload-{n}".encode())


async def dead_letter_all(store: EventStore, subscription: str) -> None:
    """With max_attempts=1 every delivery not acknowledged is dead-lettered at the next read."""
    while batch := await store.read(subscription, "c1", 50, 0):
        await store.nack(subscription, [d.delivery_id for d in batch])


async def test_dead_letters_beyond_the_cap_lose_their_oldest(backend: Backend) -> None:
    store = await backend.make(max_attempts=1, max_dead_letters=2)
    other = "plugin-b/orders"
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe(other, ["OrderPlaced"])
    await store.append([event(n) for n in range(5)])
    await dead_letter_all(store, SUB)
    await dead_letter_all(store, other)
    assert len(await store.dead_letters(SUB, 10)) == 5

    trimmed = await store.trim()

    assert trimmed.dead_letters_dropped == {SUB: 3, other: 3}
    assert [d.data for d in await store.dead_letters(SUB, 10)] == [b"payload-3", b"payload-4"]
    assert [d.data for d in await store.dead_letters(other, 10)] == [b"payload-3", b"payload-4"]
    assert (await store.trim()).dead_letters_dropped == {}
    # What is left still replays.
    assert await store.replay(SUB, []) == 2
    assert sorted(d.data for d in await store.read(SUB, "c1", 10, 0)) == [b"payload-3", b"payload-4"]


async def test_a_plugin_cannot_open_more_subscriptions_than_its_cap(backend: Backend) -> None:
    store = await backend.make(max_subscriptions_per_plugin=2)
    await store.subscribe("plugin-a/one", ["OrderPlaced"])
    await store.subscribe("plugin-a/two", ["OrderShipped"])

    with pytest.raises(ResourceExhausted) as refused:
        await store.subscribe("plugin-a/three", ["OrderPlaced"])

    assert refused.value.reason == "SUBSCRIPTION_LIMIT"
    assert refused.value.metadata["rule_id"] == "event-subscription-cap" and refused.value.is_denial
    assert "plugin-a" in refused.value.message and "2" in refused.value.message
    assert "plugin-a/three" not in {lag.subscription for lag in await store.lag()}
    # Reopening one it holds is not a new subscription; other plugins have their own cap,
    # including one whose id merely starts with the same letters.
    await store.subscribe("plugin-a/one", ["OrderPlaced"])
    await store.subscribe("plugin-ab/one", ["OrderPlaced"])
    await store.subscribe("plugin-ab/two", ["OrderPlaced"])
    # Deleting one frees its place.
    assert await store.delete("plugin-a/two")
    await store.subscribe("plugin-a/three", ["OrderPlaced"])


async def test_delete_removes_the_cursor_pending_entries_and_dead_letters(backend: Backend) -> None:
    store = await backend.make(max_attempts=1)
    kept = "plugin-b/orders"
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe(kept, ["OrderPlaced"])
    await store.append([event(n) for n in range(4)])
    await dead_letter_all(store, SUB)
    await store.append([event(n) for n in range(4, 8)])
    assert len(await store.read(SUB, "c1", 2, 0)) == 2  # two pending, two undelivered
    assert len(await store.dead_letters(SUB, 10)) == 4

    assert await store.delete(SUB) is True

    assert [lag.subscription for lag in await store.lag()] == [kept]
    assert await store.dead_letters(SUB, 10) == []
    for operation in (store.read(SUB, "c1", 10, 0), store.ack(SUB, ["x"]), store.replay(SUB, [])):
        with pytest.raises(FailedPrecondition) as gone:
            await operation
        assert gone.value.reason == "SUBSCRIPTION_MISMATCH"
    assert await store.delete(SUB) is False
    # The other subscription of the same type keeps everything.
    assert len(await store.read(kept, "c1", 20, 0)) == 8
    # The name can be opened again, even for other types, and starts from new events.
    await store.subscribe(SUB, ["OrderShipped"])
    await store.append([event(9, "OrderShipped")])
    assert [d.data for d in await store.read(SUB, "c1", 10, 0)] == [b"payload-9"]
    assert await store.dead_letters(SUB, 10) == []


async def test_delete_ends_a_blocked_read_at_once(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    reader = asyncio.ensure_future(store.read(SUB, "c1", 10, 10))
    await asyncio.sleep(0.3)
    started = time.monotonic()

    assert await store.delete(SUB)

    with pytest.raises(FailedPrecondition):
        await asyncio.wait_for(reader, 5)
    assert time.monotonic() - started < 2


async def test_events_only_a_deleted_subscription_needed_are_trimmed(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(n) for n in range(3)])
    assert (await store.trim()).removed == 0

    await store.delete(SUB)

    assert (await store.trim()).removed == 3
