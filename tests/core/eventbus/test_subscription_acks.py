"""A Subscribe stream keeps delivering while its acks are being stored: an ack
frees its prefetch slot when it is read, and acks read meanwhile are stored
together in the next store call (found by `vivified bench events`: awaiting
each ack's commit before reading the next capped a subscription below the
publish rate, so its backlog grew without bound at 500 events/s)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.waiting import until
from vivified.core.clock import SystemClock
from vivified.core.events._alerts import Alerts
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._session import SessionHooks, SubscriptionSession
from vivified.core.events._store import NewEvent
from vivified.events.v1 import events_pb2
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.sdk import envelope

pytestmark = pytest.mark.asyncio

SUB = "sub-plugin/users"
USER_CREATED = "vivified.events.v1.UserCreated"


@dataclass(frozen=True)
class ActivePlugin:
    status: str = "active"
    granted_traits: frozenset[str] = frozenset()
    manifest: PluginManifest = field(default_factory=PluginManifest)


class GatedAcks:
    """The embedded store, except that every ack waits until `gate` opens."""

    def __init__(self, store: EmbeddedEventStore) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.ack_calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def ack(self, subscription: str, delivery_ids: Sequence[str]) -> int:
        self.ack_calls.append(list(delivery_ids))
        await self.gate.wait()
        return await self.store.ack(subscription, delivery_ids)


@dataclass
class Stream:
    """The subscriber's side of one Subscribe stream."""

    outbox: asyncio.Queue[events_pb2.SubscribeRequest | None] = field(default_factory=asyncio.Queue)
    delivered: list[str] = field(default_factory=list)

    async def requests(self) -> AsyncIterator[events_pb2.SubscribeRequest]:
        while (request := await self.outbox.get()) is not None:
            yield request

    async def write(self, response: events_pb2.SubscribeResponse) -> None:
        self.delivered.append(response.delivery.delivery_id)

    def ack(self, *delivery_ids: str) -> None:
        self.outbox.put_nowait(events_pb2.SubscribeRequest(ack=events_pb2.Acknowledgement(delivery_ids=delivery_ids)))


async def started(tmp_path: pathlib.Path, events: int) -> tuple[EmbeddedEventStore, GatedAcks, SubscriptionSession]:
    store = EmbeddedEventStore(tmp_path / "events.db", lambda: EventsConfig(), SystemClock())
    await store.start()
    await store.subscribe(SUB, [USER_CREATED])
    await store.append(
        [
            NewEvent(
                f"e{i}", USER_CREATED, "pub-plugin", envelope(UserCreated(user_id=f"u{i}"), f"e{i}").SerializeToString()
            )
            for i in range(events)
        ]
    )
    gated = GatedAcks(store)
    session = SubscriptionSession(
        store=gated,  # type: ignore[arg-type]
        lookup=lambda plugin_id: ActivePlugin(),
        audit=None,  # type: ignore[arg-type] - unclassified payloads: nothing is audited per delivery
        hooks=SessionHooks(delivered=lambda subscription: None, lost=lambda subscription, count: None),
        alerts=Alerts(store=store, stamper=EnvelopeStamper(SystemClock()), audit=None),  # type: ignore[arg-type]
        plugin_id="sub-plugin",
        subscription=SUB,
        consumer="c1",
        prefetch=4,
        trace_id="",
    )
    return store, gated, session


async def test_deliveries_continue_while_an_ack_is_being_stored_and_later_acks_are_batched(
    tmp_path: pathlib.Path,
) -> None:
    store, gated, session = await started(tmp_path, 12)
    stream = Stream()
    running = asyncio.ensure_future(session.run(stream.requests(), stream.write))
    try:
        await until(lambda: len(stream.delivered) == 4, 5, "the first prefetch window")
        stream.ack(stream.delivered[0])
        await until(lambda: gated.ack_calls, 5, "the first ack to reach the store")
        stream.ack(*stream.delivered[1:4])
        # The first ack is still not stored, yet every acked slot was refilled.
        await until(lambda: len(stream.delivered) == 8, 5, "deliveries beyond the window of the held ack")
        assert gated.ack_calls == [[stream.delivered[0]]]

        gated.gate.set()
        await until(lambda: len(gated.ack_calls) == 2, 5, "the acks read meanwhile, in one call")
        assert gated.ack_calls[1] == stream.delivered[1:4]
    finally:
        gated.gate.set()
        stream.outbox.put_nowait(None)
        await asyncio.wait_for(running, 5)
        await store.close()


async def test_acks_read_before_the_stream_ends_are_stored_and_the_rest_is_redelivered(tmp_path: pathlib.Path) -> None:
    store, gated, session = await started(tmp_path, 4)
    stream = Stream()
    running = asyncio.ensure_future(session.run(stream.requests(), stream.write))
    try:
        await until(lambda: len(stream.delivered) == 4, 5, "four deliveries")
        stream.ack(stream.delivered[0])
        await until(lambda: gated.ack_calls, 5, "the first ack to reach the store")
        stream.ack(stream.delivered[1])
        stream.outbox.put_nowait(None)  # the subscriber goes away while an ack is being stored
        await asyncio.sleep(0.1)
        gated.gate.set()
        await asyncio.wait_for(running, 5)

        again = await store.read(SUB, "c2", 10, 0)
        assert sorted(d.delivery_id.split(".")[0] for d in again) == sorted(
            d.split(".")[0] for d in stream.delivered[2:]
        )
        assert {d.attempt for d in again} == {2}
    finally:
        gated.gate.set()
        await store.close()
