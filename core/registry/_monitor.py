"""Plugin liveness: Init after registration, then heartbeats.

A plugin whose Init fails, or that misses `misses` heartbeat intervals,
becomes unhealthy; the core routes nothing to it until heartbeats resume.

The interval may change while the core runs (`interval` returns the current
one; the sweep notices a change by comparing it with the last it read). A plugin learns the new
interval from its next heartbeat reply, so a plugin whose last heartbeat came
before the change is judged by the longer of the old and new intervals until it
has had `misses` old intervals to heartbeat; the sweep then uses the new one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from vivified.core.clock import Clock
from vivified.core.registry._connector import PluginConnector
from vivified.core.registry._store import (
    ACTIVE,
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    PluginRecord,
    PluginStore,
)

_log = logging.getLogger(__name__)


class HealthMonitor:
    """Runs Init for new registrations and sweeps for missed heartbeats."""

    def __init__(
        self,
        store: PluginStore,
        connector: PluginConnector,
        clock: Clock,
        *,
        interval: Callable[[], float],
        misses: int,
        init_timeout: float,
    ) -> None:
        self._store = store
        self._connector = connector
        self._clock = clock
        self._interval = interval
        self._seen = interval()
        # (interval before the last change, monotonic time the sweep saw it change)
        self._previous: tuple[float, float] | None = None
        self._misses = misses
        self._init_timeout = init_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    def registered(self, record: PluginRecord) -> None:
        """Schedule Init for a plugin that just registered."""
        task = asyncio.create_task(self._init(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _init(self, record: PluginRecord) -> None:
        ok = await self._connector.init(record, self._init_timeout)
        current = self._store.get(record.plugin_id)
        if current is None or current.status != ACTIVE or current.endpoint != record.endpoint:
            return
        self._store.heartbeat(record.plugin_id)
        self._store.set_health(record.plugin_id, HEALTHY if ok else UNHEALTHY)
        _log.info("plugin %s initialised: %s", record.plugin_id, "healthy" if ok else "unhealthy")

    def heartbeat(self, plugin_id: str) -> None:
        """Note a heartbeat; an unhealthy plugin that heartbeats again recovers."""
        record = self._store.heartbeat(plugin_id)
        if record.health == UNHEALTHY:
            self._store.set_health(plugin_id, HEALTHY)
            _log.info("plugin %s is heartbeating again", plugin_id)

    def _limit(self, interval: float, last_heartbeat: float) -> float:
        """How long a plugin whose last heartbeat was at `last_heartbeat` may stay silent."""
        if self._previous is not None and last_heartbeat < self._previous[1]:
            interval = max(interval, self._previous[0])
        return interval * self._misses

    def sweep(self) -> list[str]:
        """Mark plugins unhealthy whose last heartbeat is too old; returns their ids."""
        now = self._clock.monotonic()
        interval = self._interval()
        if interval != self._seen:
            # The longest interval a plugin may still be heartbeating at.
            longest = self._seen if self._previous is None else max(self._seen, self._previous[0])
            self._previous, self._seen = (longest, now), interval
        if self._previous is not None and now - self._previous[1] > self._previous[0] * self._misses:
            self._previous = None  # every live plugin has heartbeated since and learned the new interval
        stale = [
            r.plugin_id
            for r in self._store.all()
            if r.status == ACTIVE
            and r.health not in (UNHEALTHY, UNKNOWN)
            and (r.last_heartbeat is None or now - r.last_heartbeat > self._limit(interval, r.last_heartbeat))
        ]
        for plugin_id in stale:
            self._store.set_health(plugin_id, UNHEALTHY)
            _log.warning("plugin %s missed %d heartbeats; no traffic is routed to it", plugin_id, self._misses)
        return stale

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval() / 2)
            self.sweep()

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
