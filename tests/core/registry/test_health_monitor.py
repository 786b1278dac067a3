"""Heartbeat bookkeeping with an injected clock: missed heartbeats make a
plugin unhealthy, a heartbeat brings it back."""

from __future__ import annotations

import pathlib

import pytest

from support.clients import manifest_message
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.registry import ACTIVE, HEALTHY, INIT_FAILED, REVOKED, UNHEALTHY, UNKNOWN, PluginStore
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._monitor import HealthMonitor, InitRetry
from vivified.core.registry._store import HealthChange

pytestmark = pytest.mark.asyncio


class NoConnector:
    """The sweep never calls plugins; Init is exercised end to end elsewhere."""


def _leases(store: PluginStore, clock: ManualClock, holder: str = "replica-a") -> LifecycleLeases:
    return LifecycleLeases(store._engine, clock, holder, ttl=lambda: 15)  # noqa: SLF001 - the store's own database


async def test_missed_heartbeats_make_a_plugin_unhealthy(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    manifest = manifest_message("beats")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    await store.register("beats", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    monitor = HealthMonitor(  # type: ignore[arg-type]
        store, NoConnector(), clock, interval=lambda: 5, misses=3, init_timeout=1, leases=_leases(store, clock)
    )
    await store.heartbeat("beats")
    await store.set_health("beats", HEALTHY)

    clock.advance(14)
    assert await monitor.sweep() == []
    clock.advance(2)  # 16 s > 3 intervals of 5 s
    assert await monitor.sweep() == ["beats"]
    record = store.require("beats")
    assert (record.status, record.health) == (ACTIVE, UNHEALTHY)

    await monitor.heartbeat("beats")
    assert store.require("beats").health == HEALTHY
    assert await monitor.sweep() == []


async def test_a_changed_interval_gives_plugins_one_old_period_to_learn_it(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    for serial, plugin_id in enumerate(("early", "late"), start=1):
        manifest, token = manifest_message(plugin_id), str(serial) * 64
        await store.approve(manifest, "0" * 64, frozenset(manifest.traits), token, 10**10, replace_existing=False)
        await store.register(plugin_id, token, "0" * 64, "127.0.0.1:1", serial=serial, not_after=10**10)
    interval = [10.0]
    monitor = HealthMonitor(  # type: ignore[arg-type]
        store,
        NoConnector(),
        clock,
        interval=lambda: interval[0],
        misses=3,
        init_timeout=1,
        leases=_leases(store, clock),
    )
    for plugin_id in ("early", "late"):
        await store.heartbeat(plugin_id)
        await store.set_health(plugin_id, HEALTHY)

    clock.advance(1)
    interval[0] = 2.0  # lowered live: limit 6 s for heartbeats after the change
    assert await monitor.sweep() == []  # the sweep notices the change
    clock.advance(1)
    await monitor.heartbeat("late")  # its reply carried the new interval
    clock.advance(7)  # late: 7 s > 3 x 2 s; early (heartbeat before the change): 9 s <= 3 x 10 s
    assert await monitor.sweep() == ["late"]
    clock.advance(22)  # 31 s after the change: the old interval's grace is over
    assert await monitor.sweep() == ["early"]


async def test_two_quick_changes_keep_the_longest_old_interval(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    manifest, token = manifest_message("steady"), "1" * 64
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), token, 10**10, replace_existing=False)
    await store.register("steady", token, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    interval = [10.0]
    monitor = HealthMonitor(  # type: ignore[arg-type]
        store,
        NoConnector(),
        clock,
        interval=lambda: interval[0],
        misses=3,
        init_timeout=1,
        leases=_leases(store, clock),
    )
    await store.heartbeat("steady")
    await store.set_health("steady", HEALTHY)

    interval[0] = 2.0
    assert await monitor.sweep() == []
    clock.advance(1)
    interval[0] = 1.0  # lowered again before the plugin heard of the first change
    assert await monitor.sweep() == []
    clock.advance(20)  # 21 s silent: within 3 x 10 s, the interval it still heartbeats at
    assert await monitor.sweep() == []
    clock.advance(10)  # 31 s: past even the old interval's grace
    assert await monitor.sweep() == ["steady"]


class FlakyConnector:
    """Init fails (or times out) `failures` times, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    async def init(self, record: object, timeout: float) -> bool:
        self.attempts += 1
        return self.attempts > self.failures


async def test_m1_failed_init_is_retried_with_backoff_and_heartbeats_do_not_heal_it(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    manifest = manifest_message("flaky")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    record = await store.register("flaky", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    connector = FlakyConnector(failures=3)
    waits: list[float] = []
    changes: list[tuple[str, str, str]] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:  # between the first and second attempt: heartbeats arrive
            await monitor.heartbeat("flaky")
            assert store.require("flaky").health == INIT_FAILED

    async def on_change(change: HealthChange, why: str) -> None:
        changes.append((change.before, change.after, why))

    monitor = HealthMonitor(
        store,
        connector,
        clock,
        interval=lambda: 5,
        misses=3,
        init_timeout=1,  # type: ignore[arg-type]
        init_retry=InitRetry(first_delay_seconds=1, max_delay_seconds=3),
        sleep=sleep,
        on_change=on_change,
        leases=_leases(store, clock),
    )
    await monitor._init_until_done(record)
    assert connector.attempts == 4 and waits == [1, 2, 3]
    assert store.require("flaky").health == HEALTHY
    assert [(b, a) for b, a, _ in changes] == [(UNKNOWN, INIT_FAILED), (INIT_FAILED, HEALTHY)]


async def test_init_retries_end_with_the_registration(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    manifest = manifest_message("gone")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    record = await store.register("gone", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    connector = FlakyConnector(failures=100)

    async def sleep(seconds: float) -> None:
        await store.set_status("gone", REVOKED)

    monitor = HealthMonitor(
        store,
        connector,
        clock,
        interval=lambda: 5,
        misses=3,
        init_timeout=1,  # type: ignore[arg-type]
        sleep=sleep,
        leases=_leases(store, clock),
    )
    await monitor._init_until_done(record)
    assert connector.attempts == 1
    assert store.require("gone").health == UNKNOWN  # revoked: no health observed any more
