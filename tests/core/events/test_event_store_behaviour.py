"""One behavioural suite for both event store backends (embedded SQLite, Redis
Streams): the same assertions hold for each (docs/security.md D1-D3, D5, D6 at the
store level)."""

from __future__ import annotations

import asyncio
import time

import pytest

from support.event_backends import Backend
from vivified.core.errors import FailedPrecondition
from vivified.core.events._store import Delivery, EventStore, NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"


def event(n: int, event_type: str = "OrderPlaced", source: str = "plugin-src") -> NewEvent:
    return NewEvent(event_id=f"e{n}", event_type=event_type, source=source, data=f"payload-{n}".encode())


def payloads(deliveries: list[Delivery]) -> list[bytes | None]:
    return [d.data for d in deliveries]


async def drain(store: EventStore, subscription: str = SUB, consumer: str = "c1") -> list[Delivery]:
    """Read and acknowledge until nothing is left."""
    seen: list[Delivery] = []
    while batch := await store.read(subscription, consumer, 50, 0):
        seen += batch
        await store.ack(subscription, [d.delivery_id for d in batch])
    return seen


async def lag_of(store: EventStore, subscription: str = SUB) -> tuple[int, int, int]:
    entry = next(e for e in await store.lag() if e.subscription == subscription)
    return entry.pending, entry.undelivered, entry.lost


async def test_events_are_read_in_append_order(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    first = await store.append([event(1), event(2), event(3)])
    second = await store.append([event(4), event(5)])
    assert [a.duplicate for a in first + second] == [False] * 5
    assert len({a.position for a in first + second}) == 5

    got = await store.read(SUB, "c1", 10, 0)

    assert payloads(got) == [f"payload-{n}".encode() for n in range(1, 6)]
    assert {d.attempt for d in got} == {1} and {d.event_type for d in got} == {"OrderPlaced"}
    assert len({d.delivery_id for d in got}) == 5
    assert await store.read(SUB, "c1", 10, 0) == []


async def test_republish_within_the_window_is_a_duplicate_and_after_it_is_new(backend: Backend) -> None:
    store = await backend.make(dedupe_window_seconds=0.6)
    await store.subscribe(SUB, ["OrderPlaced"])
    [original] = await store.append([event(1)])

    [again] = await store.append([event(1)])
    [other_source] = await store.append([event(1, source="another-plugin")])

    assert again.duplicate and again.position == original.position
    assert not other_source.duplicate
    assert payloads(await drain(store)) == [b"payload-1", b"payload-1"]

    await backend.elapse(0.8)
    [later] = await store.append([event(1)])
    assert not later.duplicate and later.position != original.position
    assert payloads(await drain(store)) == [b"payload-1"]


async def test_a_duplicate_inside_one_batch_is_stored_once(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    results = await store.append([event(1), event(2), event(1)])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[2].position == results[0].position
    assert payloads(await drain(store)) == [b"payload-1", b"payload-2"]


async def test_a_new_subscription_starts_at_events_appended_after_it(backend: Backend) -> None:
    store = await backend.make()
    await store.append([event(1)])
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(2)])
    assert payloads(await store.read(SUB, "c1", 10, 0)) == [b"payload-2"]


async def test_subscribing_again_with_other_types_is_refused(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced", "OrderShipped"])
    await store.subscribe(SUB, ["OrderShipped", "OrderPlaced"])  # same set: fine

    with pytest.raises(FailedPrecondition) as refused:
        await store.subscribe(SUB, ["OrderPlaced"])

    assert refused.value.reason == "SUBSCRIPTION_MISMATCH"
    assert refused.value.code.name == "FAILED_PRECONDITION"


async def test_a_subscription_that_does_not_exist_is_refused(backend: Backend) -> None:
    store = await backend.make()
    for call in (
        store.read("plugin-a/never", "c1", 10, 0),
        store.ack("plugin-a/never", ["1.0.1"]),
        store.nack("plugin-a/never", ["1.0.1"]),
        store.replay("plugin-a/never", []),
    ):
        with pytest.raises(FailedPrecondition) as refused:
            await call
        assert refused.value.reason == "SUBSCRIPTION_MISMATCH"


async def test_only_the_subscribed_types_are_delivered(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced", "OrderShipped"])
    await store.append([event(1), event(2, "UserCreated"), event(3, "OrderShipped")])
    got = await drain(store)
    assert sorted(payloads(got)) == [b"payload-1", b"payload-3"]
    assert {d.event_type for d in got} == {"OrderPlaced", "OrderShipped"}
    assert await lag_of(store) == (0, 0, 0)  # one ack call settled deliveries of both types


async def test_ack_settles_deliveries_once_and_ignores_unknown_ids(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1), event(2)])
    got = await store.read(SUB, "c1", 10, 0)
    assert await lag_of(store) == (2, 0, 0)

    assert await store.ack(SUB, [d.delivery_id for d in got] + ["garbage", "9/9-9/9", ""]) == 2
    assert await store.ack(SUB, [d.delivery_id for d in got]) == 0
    assert await lag_of(store) == (0, 0, 0)
    await backend.elapse(0.7)
    assert await store.read(SUB, "c1", 10, 0) == []


async def test_a_read_wakes_when_an_event_lands(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    started = time.monotonic()
    reader = asyncio.create_task(store.read(SUB, "c1", 10, 5.0))
    await asyncio.sleep(0.1)
    await store.append([event(1)])
    got = await reader
    assert payloads(got) == [b"payload-1"]
    assert time.monotonic() - started < 1.0


async def test_nack_redelivers_at_once_with_attempt_two(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1)])
    [first] = await store.read(SUB, "c1", 10, 0)
    reader = asyncio.create_task(store.read(SUB, "c1", 10, 5.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()

    await store.nack(SUB, [first.delivery_id])
    [second] = await reader

    assert time.monotonic() - started < 0.5
    assert (second.data, second.attempt) == (b"payload-1", 2)
    assert second.delivery_id != first.delivery_id
    assert await store.ack(SUB, [second.delivery_id]) == 1


async def test_d1_unacknowledged_work_of_a_dead_consumer_goes_to_another(backend: Backend) -> None:
    """D1: a consumer takes an event and dies before acking; after the ack
    timeout another consumer gets it (attempt 2) and nothing stays pending."""
    store = await backend.make(ack_timeout_seconds=0.5)
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1)])
    [held] = await store.read(SUB, "dies", 10, 0)
    assert await store.read(SUB, "survivor", 10, 0) == []  # not due yet

    await backend.elapse(0.7)
    [taken] = await store.read(SUB, "survivor", 10, 0)

    assert (taken.data, taken.attempt) == (held.data, 2)
    assert await store.ack(SUB, [taken.delivery_id]) == 1
    assert await lag_of(store) == (0, 0, 0)


async def test_d3_a_stale_ack_does_not_settle_the_redelivery(backend: Backend) -> None:
    """D3: a paused consumer's late ack names the attempt it had; the entry was
    redelivered to a peer since, so the late ack must not settle the peer's work."""
    store = await backend.make(ack_timeout_seconds=0.5)
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1)])
    [paused] = await store.read(SUB, "paused", 10, 0)
    await backend.elapse(0.7)
    [peer] = await store.read(SUB, "peer", 10, 0)

    assert await store.ack(SUB, [paused.delivery_id]) == 0
    await store.nack(SUB, [paused.delivery_id])  # stale nack: ignored as well
    assert await lag_of(store) == (1, 0, 0)
    assert await store.read(SUB, "other", 10, 0) == []  # the peer still holds it

    assert await store.ack(SUB, [peer.delivery_id]) == 1
    assert await lag_of(store) == (0, 0, 0)


async def test_d2_a_poison_event_is_dead_lettered_and_others_keep_flowing(backend: Backend) -> None:
    """D2: after max_attempts deliveries the event moves to the subscription's
    dead letters, with the reason and its original position."""
    store = await backend.make(max_attempts=3)
    await store.subscribe(SUB, ["OrderPlaced"])
    [poison] = await store.append([NewEvent("poison", "OrderPlaced", "src", b"poison")])
    attempts = []
    handled: list[bytes | None] = []
    for n in range(1, 6):
        await store.append([event(n)])
        for d in await store.read(SUB, "c1", 10, 0):
            if d.data == b"poison":
                attempts.append(d.attempt)
                await store.nack(SUB, [d.delivery_id])
            else:
                handled.append(d.data)
                await store.ack(SUB, [d.delivery_id])

    assert attempts == [1, 2, 3]
    assert handled == [f"payload-{n}".encode() for n in range(1, 6)]
    [dead] = await store.dead_letters(SUB, 10)
    assert dead.reason == "delivery attempts exhausted (3)"
    assert (dead.position, dead.attempts, dead.data, dead.event_type) == (poison.position, 3, b"poison", "OrderPlaced")
    assert dead.subscription == SUB and dead.dead_at_ms > 0
    assert await lag_of(store) == (0, 0, 0)


async def test_d2_ack_timeouts_also_count_towards_dead_lettering(backend: Backend) -> None:
    store = await backend.make(max_attempts=2, ack_timeout_seconds=0.5)
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1)])
    assert [d.attempt for d in await store.read(SUB, "c1", 10, 0)] == [1]
    await backend.elapse(0.7)
    assert [d.attempt for d in await store.read(SUB, "c2", 10, 0)] == [2]
    await backend.elapse(0.7)
    assert await store.read(SUB, "c3", 10, 0) == []
    [dead] = await store.dead_letters(SUB, 10)
    assert (dead.attempts, dead.reason) == (2, "delivery attempts exhausted (2)")


async def _dead_letter_one(store: EventStore, subscription: str) -> None:
    for _ in range(3):
        for d in await store.read(subscription, "c1", 10, 0):
            await store.nack(subscription, [d.delivery_id])
    assert await store.read(subscription, "c1", 10, 0) == []


async def test_replay_delivers_to_that_subscription_only_with_fresh_attempts(backend: Backend) -> None:
    store = await backend.make(max_attempts=3)
    other = "plugin-b/orders"
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe(other, ["OrderPlaced"])
    await store.append([event(1)])
    await _dead_letter_one(store, SUB)
    assert payloads(await drain(store, other)) == [b"payload-1"]
    [dead] = await store.dead_letters(SUB, 10)
    assert await store.dead_letters(other, 10) == []

    assert await store.replay(SUB, [dead.dead_letter_id]) == 1

    assert await store.dead_letters(SUB, 10) == []
    [again] = await store.read(SUB, "c1", 10, 0)
    assert (again.data, again.attempt, again.event_type) == (b"payload-1", 1, "OrderPlaced")
    assert await store.read(other, "c1", 10, 0) == []
    assert await store.ack(SUB, [again.delivery_id]) == 1
    assert await lag_of(store) == (0, 0, 0)


async def test_replay_without_ids_replays_all_and_unknown_ids_none(backend: Backend) -> None:
    store = await backend.make(max_attempts=3)
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1), event(2)])
    await _dead_letter_one(store, SUB)
    assert len(await store.dead_letters(SUB, 10)) == 2
    assert await store.replay(SUB, ["not-an-id"]) == 0
    assert await store.replay(SUB, []) == 2
    assert sorted(payloads(await drain(store))) == [b"payload-1", b"payload-2"]


async def test_competing_consumers_split_the_work_without_duplicates(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(n) for n in range(40)])
    seen: dict[str, list[bytes | None]] = {"c1": [], "c2": []}

    async def consume(name: str) -> None:
        while batch := await store.read(SUB, name, 3, 0):
            seen[name] += payloads(batch)
            await store.ack(SUB, [d.delivery_id for d in batch])
            await asyncio.sleep(0)

    await asyncio.gather(consume("c1"), consume("c2"))

    everything = seen["c1"] + seen["c2"]
    assert sorted(everything) == sorted(f"payload-{n}".encode() for n in range(40))
    assert len(set(everything)) == 40
    assert seen["c1"] and seen["c2"]


async def test_d5_ordering_contract(backend: Backend) -> None:
    """D5: per subscription and event type, first deliveries follow append
    order, for every consumer. Not guaranteed: a redelivery comes after events
    first delivered later, and competing consumers interleave arbitrarily."""
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(n) for n in range(10, 30)])
    by_consumer: dict[str, list[int]] = {"c1": [], "c2": []}
    for turn in range(20):
        name = "c1" if turn % 3 else "c2"
        for d in await store.read(SUB, name, 2, 0):
            by_consumer[name].append(int(d.data.decode().split("-")[1]))
            await store.ack(SUB, [d.delivery_id])
    for order in by_consumer.values():
        assert order == sorted(order)
    assert sorted(by_consumer["c1"] + by_consumer["c2"]) == list(range(10, 30))

    # What is NOT guaranteed: after a nack, the consumer sees 1, 2, then 1 again.
    await store.append([event(1), event(2)])
    first, second = await store.read(SUB, "c1", 2, 0)
    await store.nack(SUB, [first.delivery_id])
    await store.append([event(3)])
    observed = [first, second, *await store.read(SUB, "c1", 10, 0)]
    assert [(d.data, d.attempt) for d in observed] == [
        (b"payload-1", 1),
        (b"payload-2", 1),
        (b"payload-1", 2),
        (b"payload-3", 1),
    ]


async def test_lag_counts_pending_undelivered_and_lost(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe("plugin-b/idle", ["OrderShipped"])
    await store.append([event(n) for n in range(5)])
    await store.read(SUB, "c1", 2, 0)
    lags = {e.subscription: e for e in await store.lag()}
    assert (lags[SUB].pending, lags[SUB].undelivered, lags[SUB].lost, lags[SUB].backlog) == (2, 3, 0, 5)
    assert lags["plugin-b/idle"].backlog == 0


async def test_trim_removes_only_what_every_subscription_acknowledged(backend: Backend) -> None:
    store = await backend.make(max_backlog=100)
    slow = "plugin-b/orders"
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe(slow, ["OrderPlaced"])
    await store.append([event(n) for n in range(6)])
    await drain(store, SUB)
    held = await store.read(slow, "c1", 2, 0)  # two pending, four undelivered

    trimmed = await store.trim()
    assert trimmed.removed == 0 and trimmed.lost == {}

    await store.ack(slow, [d.delivery_id for d in held])
    trimmed = await store.trim()
    assert trimmed.removed == 2 and trimmed.lost == {}
    assert payloads(await drain(store, slow)) == [f"payload-{n}".encode() for n in range(2, 6)]
    assert (await store.trim()).removed == 4
    assert all(e.lost == 0 and e.backlog == 0 for e in await store.lag())


async def test_events_appended_after_everything_was_trimmed_are_delivered(backend: Backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    [old] = await store.append([event(1)])
    await drain(store)
    assert (await store.trim()).removed == 1
    await store.subscribe("plugin-b/late", ["OrderPlaced"])

    [new] = await store.append([event(2)])

    assert new.position != old.position  # positions are never reused
    assert payloads(await drain(store)) == [b"payload-2"]
    assert payloads(await drain(store, "plugin-b/late")) == [b"payload-2"]


async def test_d6_a_backlog_over_the_cap_loses_its_oldest_entries_visibly(backend: Backend) -> None:
    """D6 at the store level: the slow subscription's oldest unacknowledged
    entries are forced out and counted as lost; one trimmed while pending comes
    back without data; a caught-up subscription loses nothing."""
    store = await backend.make(max_backlog=5, ack_timeout_seconds=0.5)
    fast = "plugin-b/fast"
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.subscribe(fast, ["OrderPlaced"])
    await store.append([event(n) for n in range(10)])
    assert len(await store.read(SUB, "slow", 2, 0)) == 2  # payload-0, payload-1 pending
    assert len(await drain(store, fast)) == 10

    trimmed = await store.trim()

    assert trimmed.lost == {SUB: 5}
    assert await lag_of(store) == (0, 5, 5)  # the two pending ones count as lost, not backlog
    assert await lag_of(store, fast) == (0, 0, 0)
    await backend.elapse(0.7)
    got = await store.read(SUB, "slow", 10, 0)
    gone = [d for d in got if d.data is None]
    assert len(gone) == 2 and all(d.attempt == 2 for d in gone)
    assert {d.event_type for d in gone} == {"OrderPlaced"}
    assert [d.data for d in got if d.data is not None] == [f"payload-{n}".encode() for n in range(5, 10)]
    await store.ack(SUB, [d.delivery_id for d in got])
    assert await lag_of(store) == (0, 0, 5)


async def test_the_cap_applies_to_a_subscription_across_its_types(backend: Backend) -> None:
    store = await backend.make(max_backlog=5)
    await store.subscribe(SUB, ["OrderPlaced", "OrderShipped"])
    await store.append([event(n, "OrderPlaced" if n % 2 else "OrderShipped") for n in range(20)])

    trimmed = await store.trim()

    assert trimmed.lost == {SUB: 15}
    assert await lag_of(store) == (0, 5, 15)
    survivors = await drain(store)
    assert len(survivors) == 5 and all(d.data is not None for d in survivors)
    assert (await store.trim()).lost == {}


async def test_d1_nothing_stays_pending_after_a_drain(backend: Backend) -> None:
    store = await backend.make(ack_timeout_seconds=0.5, max_attempts=5)
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(n) for n in range(20)])
    first = await store.read(SUB, "c1", 5, 0)
    await store.nack(SUB, [d.delivery_id for d in first[:2]])
    await store.read(SUB, "c2", 4, 0)  # redeliveries first, then two new: never acked
    await backend.elapse(0.7)
    delivered = await drain(store, SUB, "c3")
    assert {d.data for d in delivered} | {d.data for d in first[2:]} == {f"payload-{n}".encode() for n in range(20)}
    assert await lag_of(store) == (0, 0, 0)
    assert await store.dead_letters(SUB, 10) == []
