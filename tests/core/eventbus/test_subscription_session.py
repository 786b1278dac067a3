"""The subscription session decides every delivery when it is sent (C3): a
trait withdrawn between two deliveries redacts the second, a disabled plugin's
stream ends, and a redacted copy never leaks into another subscriber's."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from support.waiting import until
from vivified.core.audit import AuditLog, CheckpointSigner, audit_table
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.errors import PermissionDenied
from vivified.core.events import EventsConfig
from vivified.core.events._alerts import Alerts
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._session import SessionHooks, SubscriptionSession
from vivified.events.v1.canonical_pb2 import SecurityAlert, UserCreated
from vivified.events.v1.events_pb2 import Event, SubscribeRequest, SubscribeResponse
from vivified.manifest.v1.manifest_pb2 import PluginManifest

pytestmark = pytest.mark.asyncio
USER_CREATED = "vivified.events.v1.UserCreated"


@dataclass
class View:
    status: str = "active"
    granted_traits: frozenset[str] = frozenset({"handles_pii", "audit_required"})
    manifest: PluginManifest = field(default_factory=PluginManifest)


async def _setup(tmp_path: pathlib.Path) -> tuple[EmbeddedEventStore, AuditLog, sa.Engine]:
    clock = SystemClock()
    store = EmbeddedEventStore(tmp_path / "events.db", lambda: EventsConfig(ack_timeout_seconds=30), clock)
    await store.start()
    engine = create_engine_for(sqlite_url(tmp_path / "core.db"))
    audit = AuditLog(
        engine,
        clock=clock,
        signer=CheckpointSigner.load_or_create(tmp_path / "ck.key"),
        checkpoint_path=tmp_path / "ck.jsonl",
    )
    await audit.start()
    return store, audit, engine


async def _publish(store: EmbeddedEventStore, event_id: str) -> None:
    stamper = EnvelopeStamper(SystemClock())
    event = stamper.core_event(event_id, UserCreated(user_id=event_id, email=f"{event_id}@example.com"))
    await store.append([event])


async def _never(stop: asyncio.Event) -> AsyncIterator[SubscribeRequest]:
    await stop.wait()
    return
    yield  # an async generator that sends nothing until told to stop


async def test_c3_traits_and_status_are_read_for_every_delivery(tmp_path: pathlib.Path) -> None:
    store, audit, engine = await _setup(tmp_path)
    view = View()
    sent: list[SubscribeResponse] = []
    await store.subscribe("reader/users", [USER_CREATED])
    session = SubscriptionSession(
        store=store,
        lookup=lambda _: view,
        audit=audit,
        hooks=SessionHooks(delivered=lambda _: None, lost=lambda _s, _n: None),
        alerts=Alerts(store=store, stamper=EnvelopeStamper(SystemClock()), audit=audit),
        plugin_id="reader",
        subscription="reader/users",
        consumer="c1",
        prefetch=8,
        trace_id="",
    )

    async def write(response: SubscribeResponse) -> None:
        sent.append(response)

    stop = asyncio.Event()
    running = asyncio.ensure_future(session.run(_never(stop), write))
    try:
        await _publish(store, "first")
        await until(lambda: len(sent) == 1, 10, "the first delivery")
        assert sent[0].delivery.event.payload.value  # unredacted: the trait is held
        first = UserCreated()
        sent[0].delivery.event.payload.Unpack(first)
        assert first.email == "first@example.com" and not sent[0].delivery.redacted_fields

        view.granted_traits = frozenset()  # withdrawn while the stream is open
        await _publish(store, "second")
        await until(lambda: len(sent) == 2, 10, "the second delivery")
        second = UserCreated()
        sent[1].delivery.event.payload.Unpack(second)
        assert second.email == "" and list(sent[1].delivery.redacted_fields) == ["email"]

        view.status = "disabled"
        await _publish(store, "third")
        with pytest.raises(PermissionDenied):
            await asyncio.wait_for(running, 10)
        assert len(sent) == 2
    finally:
        stop.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await audit.close()
        await store.close()
    with engine.connect() as conn:
        actions = [r.action for r in conn.execute(sa.select(audit_table).order_by(audit_table.c.seq))]
    assert actions == ["event.deliver", "event.redact"]


async def test_an_event_trimmed_while_pending_is_audited_counted_and_alerted(tmp_path: pathlib.Path) -> None:
    """D6: the backlog cap trims two entries a consumer held; when they come
    back without data the session audits and counts each loss and raises a
    `SecurityAlert` (kind `events_lost`) that alert subscribers receive."""
    clock = SystemClock()
    config = EventsConfig(ack_timeout_seconds=0.2, max_backlog=5)
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
    await store.subscribe("reader/users", [USER_CREATED])
    await store.subscribe("watcher/alerts", ["vivified.events.v1.SecurityAlert"])
    for n in range(10):
        await _publish(store, f"e{n}")
    assert len(await store.read("reader/users", "gone-consumer", 2, 0)) == 2  # held, never acked
    assert (await store.trim()).lost == {"reader/users": 5}
    await asyncio.sleep(0.3)  # past the 0.2 s ack timeout: the two are due again, without data
    lost: list[tuple[str, int]] = []
    sent: list[SubscribeResponse] = []

    async def write(response: SubscribeResponse) -> None:
        sent.append(response)

    session = SubscriptionSession(
        store=store,
        lookup=lambda _: View(),
        audit=audit,
        hooks=SessionHooks(delivered=lambda _: None, lost=lambda s, n: lost.append((s, n))),
        alerts=Alerts(store=store, stamper=EnvelopeStamper(clock), audit=audit),
        plugin_id="reader",
        subscription="reader/users",
        consumer="c1",
        prefetch=8,
        trace_id="",
    )
    stop = asyncio.Event()
    running = asyncio.ensure_future(session.run(_never(stop), write))
    try:
        await until(lambda: len(lost) == 2 and len(sent) == 5, 10, "two losses and five deliveries")
        alerts = await store.read("watcher/alerts", "w", 10, 1.0)
    finally:
        stop.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await audit.close()
        await store.close()
    assert lost == [("reader/users", 1)] * 2
    received = []
    for delivery in alerts:
        alert = SecurityAlert()
        assert delivery.data is not None
        Event.FromString(delivery.data).payload.Unpack(alert)
        received.append((alert.kind, alert.subject, alert.details["event_type"], alert.details["lost"]))
    assert received == [("events_lost", "reader/users", USER_CREATED, "1")] * 2
    with engine.connect() as conn:
        rows = [(r.action, r.resource) for r in conn.execute(sa.select(audit_table).order_by(audit_table.c.seq))]
    assert rows.count(("event.lost", "subscription/reader/users")) == 2
    assert rows.count(("event.alert.events_lost", "subscription/reader/users")) == 2
