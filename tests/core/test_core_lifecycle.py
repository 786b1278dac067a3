"""The core's components start in one order and stop in the reverse one, and a
start that fails part-way stops everything it had started: no port left
listening, no store left open (the audit writer and event store threads end),
no background task left running. The core runs in this process, so what it
leaves behind is visible here."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import threading
from collections.abc import Iterator

import pytest

from vivified.core.app import Core, run_file
from vivified.core.config import CoreConfig
from vivified.core.errors import Unavailable
from vivified.core.events import EventsConfig

pytestmark = pytest.mark.asyncio

COMPONENTS = (
    "database",
    "audit log",
    "plugin store",
    "event bus",
    "plugin connections",
    "gRPC server",
    "metrics endpoint",
    "health monitor",
    "registry sync",
    "CA rotation",
    "config follower",
    "runtime settings",
)
# Threads of the stores the core opens: the audit log's writer (and its group
# sync), the embedded event store's SQLite worker.
STORE_THREADS = {"audit-writer", "audit-sync", "event-store-sqlite"}


def _listening_ports() -> set[int]:
    """TCP ports this process has a listening socket on (from /proc)."""
    inodes = set()
    for fd in pathlib.Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _store_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name in STORE_THREADS and t.is_alive())


async def _other_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    for _ in range(5):  # let cancelled tasks finish
        await asyncio.sleep(0)
    return {t for t in asyncio.all_tasks() if t not in before and not t.done()}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


def _config(tmp_path: pathlib.Path, **fields: object) -> CoreConfig:
    addresses = {"listen_address": "127.0.0.1:0", "bootstrap_address": "127.0.0.1:0", "metrics_address": "127.0.0.1:0"}
    return CoreConfig(data_dir=tmp_path / "data", **(addresses | fields))  # type: ignore[arg-type]


async def test_start_then_stop_leaves_nothing_running(tmp_path: pathlib.Path) -> None:
    """Control for the failed starts below: the same checks see what a
    running core holds, and that stop() releases all of it."""
    ports_before, tasks_before = _listening_ports(), set(asyncio.all_tasks())
    core = Core(_config(tmp_path))
    running = await core.start()
    try:
        assert core.components.started == COMPONENTS
        listening = _listening_ports() - ports_before
        bound = {
            int(a.rsplit(":", 1)[1])
            for a in (running.listen_address, running.bootstrap_address, running.metrics_address)
        }
        assert bound <= listening, f"the core serves on {bound}, listening: {listening}"
        assert _store_threads() == ["audit-sync", "audit-writer", "event-store-sqlite"]
        assert await _other_tasks(tasks_before), "a running core has background tasks"
        assert run_file(core.config.data_dir).exists()
    finally:
        await core.stop()
    assert _listening_ports() - ports_before == set()
    assert _store_threads() == []
    assert await _other_tasks(tasks_before) == set()
    assert core.components.started == ()
    assert not run_file(core.config.data_dir).exists()


@pytest.mark.parametrize(
    "address",
    [pytest.param("metrics_address", id="metrics-endpoint"), pytest.param("bootstrap_address", id="grpc-server")],
)
async def test_failed_start_stops_what_started(tmp_path: pathlib.Path, taken_port: int, address: str) -> None:
    """A port already taken: the metrics endpoint fails after the gRPC server
    serves; the bootstrap port fails after the mTLS port is bound and the
    event bus runs. Either way everything before it is stopped again."""
    ports_before, tasks_before = _listening_ports(), set(asyncio.all_tasks())
    assert taken_port in ports_before
    core = Core(_config(tmp_path, **{address: f"127.0.0.1:{taken_port}"}))
    with pytest.raises((OSError, RuntimeError)):
        await core.start()
    assert _listening_ports() - ports_before == set(), "a port is still listening after the failed start"
    assert _store_threads() == [], "a store is still open after the failed start"
    assert await _other_tasks(tasks_before) == set(), "a task still runs after the failed start"
    assert core.components.started == ()
    assert not run_file(core.config.data_dir).exists()
    # It got as far as the failing component: what it started before ran.
    assert core.running is None
    log = (core.config.data_dir / "audit" / "checkpoints.jsonl").read_text()
    assert log.strip(), "the audit log started (and closed with a checkpoint) before the failure"


async def test_unreachable_event_store_stops_what_started(tmp_path: pathlib.Path) -> None:
    """The event store on a Redis nobody listens on: the start fails at the
    event bus, Unavailable EVENT_STORE_UNAVAILABLE, with the audit log closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    ports_before, tasks_before = _listening_ports(), set(asyncio.all_tasks())
    core = Core(_config(tmp_path, events=EventsConfig(redis_url=f"redis://127.0.0.1:{closed_port}/0")))
    with pytest.raises(Unavailable) as refused:
        await core.start()
    assert refused.value.reason == "EVENT_STORE_UNAVAILABLE"
    assert refused.value.message.startswith("event store: ")
    assert _listening_ports() - ports_before == set()
    assert _store_threads() == []
    assert await _other_tasks(tasks_before) == set()
    assert core.components.started == ()
