"""Heartbeat bookkeeping with an injected clock: missed heartbeats make a
plugin unhealthy, a heartbeat brings it back."""

from __future__ import annotations

import pathlib

import pytest

from support.clients import manifest_message
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.registry import ACTIVE, HEALTHY, UNHEALTHY, PluginStore
from vivified.core.registry._monitor import HealthMonitor

pytestmark = pytest.mark.asyncio


class NoConnector:
    """The sweep never calls plugins; Init is exercised end to end elsewhere."""


async def test_missed_heartbeats_make_a_plugin_unhealthy(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    store = PluginStore(create_engine_for(sqlite_url(tmp_path / "db.sqlite")), clock)
    manifest = manifest_message("beats")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    await store.register("beats", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    monitor = HealthMonitor(store, NoConnector(), clock, interval=5, misses=3, init_timeout=1)  # type: ignore[arg-type]
    store.heartbeat("beats")
    store.set_health("beats", HEALTHY)

    clock.advance(14)
    assert monitor.sweep() == []
    clock.advance(2)  # 16 s > 3 intervals of 5 s
    assert monitor.sweep() == ["beats"]
    record = store.require("beats")
    assert (record.status, record.health) == (ACTIVE, UNHEALTHY)

    monitor.heartbeat("beats")
    assert store.require("beats").health == HEALTHY
    assert monitor.sweep() == []
