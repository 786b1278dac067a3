"""Keeps this core's `WatchMyConfig` streams told of config changes made
through other cores sharing the database: `PluginConfigStore.poll` every
`interval` seconds and, on PostgreSQL, at once when a change is notified
on `vivified_config`. A missed notification costs at most one interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa

from vivified.core.db import describe_url, driver_message, wake_on_notify
from vivified.core.plugin_config._store import NOTIFY_CHANNEL, PluginConfigStore

_log = logging.getLogger(__name__)


class ConfigFollower:
    """The poll loop and the notification listener for config changes."""

    def __init__(self, store: PluginConfigStore, engine: sa.Engine, *, interval: float) -> None:
        self._store = store
        self._engine = engine
        self._interval = interval
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._store.prime()
        self._tasks.append(asyncio.create_task(self._poll_forever()))
        if self._engine.dialect.name == "postgresql":
            listener = wake_on_notify(self._engine, NOTIFY_CHANNEL, self._wake, self._interval)
            self._tasks.append(asyncio.create_task(listener))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _problem(self, exc: BaseException) -> str:
        url = self._engine.url
        return f"cannot read config changes from {describe_url(url)}: {driver_message(exc, url)}"

    async def _poll_forever(self) -> None:
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self._store.poll()
            except Exception as exc:  # noqa: BLE001 - retried next interval
                if not failing:
                    _log.warning("%s; retrying every %gs", self._problem(exc), self._interval)
                failing = True
            else:
                failing = False
