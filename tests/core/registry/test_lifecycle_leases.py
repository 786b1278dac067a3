"""Lifecycle leases with an injected clock on one database shared by two
"replicas": one holder at a time, taken over only after expiry, and a
registration taking the lease from a live holder."""

from __future__ import annotations

import pathlib

import pytest

from support.clients import manifest_message
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.registry import HEALTHY, UNHEALTHY, PluginStore
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._monitor import HealthMonitor

pytestmark = pytest.mark.asyncio


class NoConnector:
    """The sweep never calls plugins."""


async def test_one_holder_at_a_time_and_takeover_after_expiry(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    engine = create_engine_for(sqlite_url(tmp_path / "db.sqlite"))
    store = PluginStore(engine, clock)
    await store.load()
    manifest = manifest_message("leased")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    a, b = (LifecycleLeases(engine, clock, name, ttl=lambda: 3) for name in ("replica-a", "replica-b"))
    await a.take("leased")
    await store.register("leased", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    assert await b.renew_and_claim() == set()
    clock.advance(2)
    assert await a.renew_and_claim() == {"leased"}  # renewed: 3 s from now
    clock.advance(2.5)
    assert await b.renew_and_claim() == set()  # 4.5 s after A took it, but A renewed at 2 s
    clock.advance(1)  # A silent (killed) for 3.5 s > ttl
    assert await b.renew_and_claim() == {"leased"}
    assert await a.renew_and_claim() == set()  # A came back: the lease is B's now
    await a.take("leased")  # ...until the plugin registers again through A
    assert await b.renew_and_claim() == set() and await a.renew_and_claim() == {"leased"}


async def test_only_the_holder_sweeps_and_the_other_takes_over(tmp_path: pathlib.Path) -> None:
    clock = ManualClock()
    engine = create_engine_for(sqlite_url(tmp_path / "db.sqlite"))
    store = PluginStore(engine, clock)
    await store.load()
    manifest = manifest_message("swept")
    await store.approve(manifest, "0" * 64, frozenset(manifest.traits), "t" * 64, 10**10, replace_existing=False)
    monitors = [
        HealthMonitor(  # type: ignore[arg-type]
            store,
            NoConnector(),
            clock,
            interval=lambda: 1,
            misses=3,
            init_timeout=1,
            leases=LifecycleLeases(engine, clock, name, ttl=lambda: 5),
        )
        for name in ("replica-a", "replica-b")
    ]
    a, b = monitors
    await a.registering("swept")
    await store.register("swept", "t" * 64, "0" * 64, "127.0.0.1:1", serial=1, not_after=10**10)
    await store.heartbeat("swept")
    await store.set_health("swept", HEALTHY)
    clock.advance(3.5)  # silent past 3 intervals; A (the holder) is not sweeping: killed
    assert await b.sweep() == []  # B may not act on it while A's lease runs (A took it at 0 s, ttl 5 s)...
    clock.advance(1.6)
    assert await b.sweep() == ["swept"]  # ...and takes over once it has expired
    assert store.require("swept").health == UNHEALTHY
