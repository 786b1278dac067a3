"""D6 with a real Redis: a plugin that reconnects again and again does not
leave one consumer per Subscribe stream behind in the subscription's groups."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from support.redis_server import redis_running
from support.waiting import until
from vivified.core.audit import AuditLog, CheckpointSigner
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.events import EventsConfig, NewEvent
from vivified.core.events._alerts import Alerts
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._redis import RedisEventStore
from vivified.core.events._session import SessionHooks, SubscriptionSession
from vivified.events.v1.canonical_pb2 import EmailSent
from vivified.events.v1.events_pb2 import (
    Acknowledgement,
    SubscribeRequest,
    SubscribeResponse,
)
from vivified.manifest.v1.manifest_pb2 import PluginManifest

pytestmark = pytest.mark.asyncio

EMAIL_SENT = "vivified.events.v1.EmailSent"
SUB = "mailer/sent"


class View:
    status = "active"
    granted_traits = frozenset({"handles_pii", "handles_phi", "handles_confidential"})
    manifest = PluginManifest()


def sent_event(n: int) -> NewEvent:
    return EnvelopeStamper(SystemClock()).core_event(f"e{n}", EmailSent())


async def test_consumers_stay_bounded_over_many_reconnects(tmp_path: pathlib.Path) -> None:
    clock = SystemClock()
    audit = AuditLog(
        create_engine_for(sqlite_url(tmp_path / "core.db")),
        clock=clock,
        signer=CheckpointSigner.load_or_create(tmp_path / "ck.key"),
        checkpoint_path=tmp_path / "ck.jsonl",
    )
    await audit.start()
    with redis_running(tmp_path / "redis") as server:
        store = RedisEventStore(server.url, lambda: EventsConfig(ack_timeout_seconds=30), clock)
        await store.start()
        client = aioredis.Redis.from_url(server.url)
        try:
            await store.subscribe(SUB, [EMAIL_SENT])
            for cycle in range(12):
                sent: list[SubscribeResponse] = []
                await store.append([sent_event(cycle)])

                async def requests() -> AsyncIterator[SubscribeRequest]:
                    await until(lambda: bool(sent), 10, "a delivery")  # noqa: B023 - awaited within this cycle
                    yield SubscribeRequest(ack=Acknowledgement(delivery_ids=[sent[0].delivery.delivery_id]))  # noqa: B023

                async def write(response: SubscribeResponse) -> None:
                    sent.append(response)  # noqa: B023

                session = SubscriptionSession(
                    store=store,
                    lookup=lambda _: View(),
                    audit=audit,
                    hooks=SessionHooks(delivered=lambda _: None, lost=lambda _s, _n: None),
                    alerts=Alerts(store=store, stamper=EnvelopeStamper(SystemClock()), audit=audit),
                    plugin_id="mailer",
                    subscription=SUB,
                    consumer=f"stream-{cycle}",
                    prefetch=8,
                    trace_id="",
                )
                # The client ends its stream after acking: the session stores the ack, then releases its consumer.
                await asyncio.wait_for(session.run(requests(), write), 15)
                assert len(sent) == 1
            consumers = await client.xinfo_consumers(f"vivified:events:stream:{EMAIL_SENT}", SUB)
            assert consumers == []
            assert [lag.backlog for lag in await store.lag()] == [0]
        finally:
            await client.aclose()
            await store.close()
            await audit.close()
