"""Keeps a replica's registry view current: a periodic reconcile plus, on
PostgreSQL, LISTEN for the notification every registry change sends.

The reconcile reads `registry_changes` after the version this replica applied
every `sync_bound / 4` seconds, so a missed notification costs at most that
long; a notification only wakes it early. When no reconcile has succeeded for
longer than `sync_bound`, `PluginStore.stale()` says so and the status gate
refuses plugin calls (`UNAVAILABLE`, `REGISTRY_STALE`) until one succeeds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import sqlalchemy as sa

from vivified.core.db import describe_url, driver_message, wake_on_notify
from vivified.core.registry._store import NOTIFY_CHANNEL, PluginStore

_log = logging.getLogger(__name__)


def _problem(exc: BaseException, url: sa.URL) -> str:
    return f"cannot read registry changes from {describe_url(url)}: {driver_message(exc, url)}"


class RegistrySync:
    """The reconcile loop and the notification listener of one replica."""

    def __init__(self, store: PluginStore, engine: sa.Engine, *, on_stale: Callable[[], None]) -> None:
        self._store = store
        self._on_stale = on_stale
        self._engine = engine
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def interval(self) -> float:
        return self._store.sync_bound / 4

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._reconcile_forever()))
        self._tasks.append(asyncio.create_task(self._watch_forever()))
        if self._engine.dialect.name == "postgresql":
            listener = wake_on_notify(self._engine, NOTIFY_CHANNEL, self._wake, self.interval)
            self._tasks.append(asyncio.create_task(listener))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _watch_forever(self) -> None:
        """Notice the view going stale even while a read hangs (a silent network)."""
        warned = False
        while True:
            await asyncio.sleep(self.interval)
            stale = self._store.stale()
            if stale and not warned:
                _log.error("%s; refusing plugin calls until the registry can be read (REGISTRY_STALE)", stale)
                self._on_stale()
            elif not stale and warned:
                _log.warning("registry view current again (version %d); plugin calls served", self._store.version)
            warned = bool(stale)

    async def _reconcile_forever(self) -> None:
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self._store.sync()
            except Exception as exc:  # noqa: BLE001 - any failure is retried; the bound makes it fail closed
                problem = _problem(exc, self._engine.url)
                self._store.sync_failed(problem)
                if not failing:
                    _log.warning("%s; retrying every %gs", problem, self.interval)
                failing = True
            else:
                if failing:
                    _log.warning("registry changes readable again (version %d)", self._store.version)
                failing = False
