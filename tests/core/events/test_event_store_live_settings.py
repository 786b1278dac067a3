"""Both event store backends read their runtime settings at each use, so an
administrator's change applies to a running store: the ack timeout to the next
redelivery of deliveries made after the change, the attempt limit to the next
delivery, the backlog cap to the next trim."""

from __future__ import annotations

from dataclasses import replace

import pytest

from support.event_backends import TEST_CONFIG, Backend
from vivified.core.events._config import EventsConfig
from vivified.core.events._store import NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"


def _event(n: int) -> NewEvent:
    return NewEvent(f"e{n}", "OrderPlaced", "src", f"payload-{n}".encode())


async def test_ack_timeout_and_attempts_follow_a_change(backend: Backend) -> None:
    current = [EventsConfig(**{**TEST_CONFIG, "ack_timeout_seconds": 30.0, "max_attempts": 5})]
    store = await backend.make_live(lambda: current[0])
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([_event(1)])
    [first] = await store.read(SUB, "c1", 10, 0)
    await backend.elapse(0.7)
    assert await store.read(SUB, "c2", 10, 0) == []  # 30 s ack timeout: not redelivered
    await store.nack(SUB, [first.delivery_id])

    current[0] = replace(current[0], ack_timeout_seconds=0.5)
    assert [d.attempt for d in await store.read(SUB, "c2", 10, 0)] == [2]
    await backend.elapse(0.7)
    [third] = await store.read(SUB, "c3", 10, 0)  # redelivered after the new 0.5 s timeout
    assert third.attempt == 3

    current[0] = replace(current[0], max_attempts=3)
    await store.nack(SUB, [third.delivery_id])
    assert await store.read(SUB, "c4", 10, 0) == []  # three attempts are the limit now, not five
    [dead] = await store.dead_letters(SUB, 10)
    assert (dead.attempts, dead.reason) == (3, "delivery attempts exhausted (3)")


async def test_backlog_cap_follows_a_change(backend: Backend) -> None:
    current = [EventsConfig(**{**TEST_CONFIG, "max_backlog": 100})]
    store = await backend.make_live(lambda: current[0])
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([_event(n) for n in range(10)])
    assert (await store.trim()).lost == {}
    current[0] = replace(current[0], max_backlog=4)
    assert (await store.trim()).lost == {SUB: 6}
