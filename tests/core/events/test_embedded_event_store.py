"""Embedded backend only: an acknowledged append survives `kill -9` of the
process that made it; concurrent appends share commits."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from vivified.core.clock import SystemClock
from vivified.core.errors import Unavailable
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._store import NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"
CHILD = pathlib.Path(__file__).parents[2] / "support" / "event_append_child.py"


def _acknowledged_until_killed(db: pathlib.Path, wanted: int) -> list[str]:
    errors = db.parent / "child.err"
    acknowledged: list[str] = []
    with (
        errors.open("wb") as err,
        subprocess.Popen(
            [sys.executable, str(CHILD), str(db), SUB], stdout=subprocess.PIPE, stderr=err, text=True
        ) as child,
    ):
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready", errors.read_text()
            while len(acknowledged) < wanted:
                line = child.stdout.readline()
                assert line, f"the appending child exited early: {errors.read_text()}"
                acknowledged.append(line.strip())
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        # Lines already in the pipe were acknowledged before the kill, too.
        acknowledged += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    return acknowledged


async def test_acknowledged_appends_survive_kill_9(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "events.db"
    acknowledged = await asyncio.to_thread(_acknowledged_until_killed, db, 2000)

    store = EmbeddedEventStore(db, lambda: EventsConfig(), SystemClock())
    await store.start()
    try:
        stored: set[bytes | None] = set()
        while got := await store.read(SUB, "c1", 500, 0):
            stored |= {d.data for d in got}
            await store.ack(SUB, [d.delivery_id for d in got])
        lost = {i.encode() for i in acknowledged} - stored
        assert len(acknowledged) >= 2000
        assert lost == set()
    finally:
        await store.close()


async def test_concurrent_single_appends_all_succeed_with_distinct_positions(tmp_path: pathlib.Path) -> None:
    store = EmbeddedEventStore(tmp_path / "events.db", lambda: EventsConfig(), SystemClock())
    await store.start()
    try:
        results = await asyncio.gather(
            *(store.append([NewEvent(f"e{i}", "OrderPlaced", "src", b"x")]) for i in range(300))
        )
        positions = [r.position for [r] in results]
        assert len(set(positions)) == 300
    finally:
        await store.close()


async def test_a_blocked_read_wakes_when_an_ack_timeout_expires(tmp_path: pathlib.Path) -> None:
    store = EmbeddedEventStore(tmp_path / "events.db", lambda: EventsConfig(ack_timeout_seconds=0.3), SystemClock())
    await store.start()
    try:
        await store.subscribe(SUB, ["OrderPlaced"])
        await store.append([NewEvent("e1", "OrderPlaced", "src", b"x")])
        [first] = await store.read(SUB, "c1", 10, 0)
        started = time.monotonic()
        [again] = await store.read(SUB, "c2", 10, 5.0)
        assert 0.25 < time.monotonic() - started < 1.0
        assert (again.data, again.attempt) == (b"x", 2)
        assert first.delivery_id != again.delivery_id
    finally:
        await store.close()


async def test_an_unopenable_file_is_unavailable(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = EmbeddedEventStore(blocker / "events.db", lambda: EventsConfig(), SystemClock())
    with pytest.raises(Unavailable) as failed:
        await store.start()
    assert failed.value.reason == "EVENT_STORE_UNAVAILABLE"
    await store.close()
