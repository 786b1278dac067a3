"""Positions are never reused: an event appended after trimming emptied the
store still reaches a subscription whose cursor had moved past the old top
(found by `vivified bench events`: the embedded store restarted its sequence
and silently skipped, then trimmed, such events)."""

from __future__ import annotations

import pytest

from vivified.core.events._store import NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"


def event(n: int, event_type: str = "OrderPlaced") -> NewEvent:
    return NewEvent(event_id=f"e{n}", event_type=event_type, source="plugin-src", data=f"payload-{n}".encode())


async def test_an_event_appended_after_the_store_was_trimmed_empty_is_delivered(backend) -> None:
    store = await backend.make()
    await store.subscribe(SUB, ["OrderPlaced"])
    await store.append([event(1)])
    [first] = await store.read(SUB, "c1", 10, 0)
    await store.ack(SUB, [first.delivery_id])
    await store.append([event(2, "Quiet"), event(3, "Quiet")])  # no subscriber: the cursor passes them
    assert await store.read(SUB, "c1", 10, 0) == []
    await store.trim()  # everything was acknowledged or has no reader

    await store.append([event(4)])
    await store.trim()

    delivered = await store.read(SUB, "c1", 10, 0)
    assert [d.data for d in delivered] == [b"payload-4"]
