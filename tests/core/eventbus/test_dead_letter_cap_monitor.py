"""D6: dead letters beyond a subscription's cap are discarded by housekeeping,
and each discard pass is audited, counted and alerted like a backlog loss."""

from __future__ import annotations

import json
import pathlib

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditLog, CheckpointSigner, audit_table
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.events import EventsConfig, NewEvent
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._monitor import BacklogMonitor
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SecurityAlert
from vivified.events.v1.events_pb2 import Event

pytestmark = pytest.mark.asyncio

SUB = "reader/orders"
ALERTS = "watcher/alerts"
SECURITY_ALERT = "vivified.events.v1.SecurityAlert"


async def test_a_dead_letter_discard_pass_is_audited_counted_and_alerted(tmp_path: pathlib.Path) -> None:
    clock = SystemClock()
    config = EventsConfig(max_attempts=1, max_dead_letters=2)
    store = EmbeddedEventStore(tmp_path / "events.db", lambda: config, clock)
    await store.start()
    engine = create_engine_for(sqlite_url(tmp_path / "core.db"))
    audit = AuditLog(
        engine,
        clock=clock,
        signer=CheckpointSigner.load_or_create(tmp_path / "ck.key"),
        checkpoint_path=tmp_path / "ck.jsonl",
    )
    await audit.start()
    dropped: list[tuple[str, int]] = []
    monitor = BacklogMonitor(
        store=store,
        stamper=EnvelopeStamper(clock),
        audit=audit,
        config=lambda: config,
        on_lag=lambda _: None,
        on_lost=lambda _s, _n: None,
        on_dead_letters_dropped=lambda subscription, n: dropped.append((subscription, n)),
    )
    try:
        await store.subscribe(SUB, ["Order"])
        await store.subscribe(ALERTS, [SECURITY_ALERT])
        await store.append([NewEvent(f"e{n}", "Order", "src", f"order-{n}".encode()) for n in range(5)])
        while batch := await store.read(SUB, "c1", 10, 0):  # max_attempts=1: the next read dead-letters them
            await store.nack(SUB, [d.delivery_id for d in batch])

        await monitor.run_once()
        await monitor.run_once()  # nothing more to discard: nothing more recorded

        assert dropped == [(SUB, 3)]
        assert [d.data for d in await store.dead_letters(SUB, 10)] == [b"order-3", b"order-4"]
        [delivery] = await store.read(ALERTS, "c1", 10, 0)
        alert = SecurityAlert()
        Event.FromString(delivery.data).payload.Unpack(alert)
        assert (alert.kind, alert.severity, alert.subject) == ("dead_letters_dropped", SEVERITY_CRITICAL, SUB)
        assert dict(alert.details) == {"dropped": "3", "cap": "2"}
    finally:
        await audit.close()
        await store.close()
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)))
    assert [(r.actor, r.action, r.resource) for r in rows] == [
        ("core:core", "event.alert.dead_letters_dropped", f"subscription/{SUB}")
    ]
    assert json.loads(rows[0].detail) == {"alert_id": alert.alert_id, "dropped": "3", "cap": "2"}
