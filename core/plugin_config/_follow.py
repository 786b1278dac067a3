"""Keeps this core's `WatchMyConfig` streams told of config changes made
through other cores sharing the database: `PluginConfigStore.poll` every
`interval` seconds and, on PostgreSQL, at once when a change is notified
on `vivified_config`. A missed notification costs at most one interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
import sqlalchemy as sa
from vivified.core.db import describe_url, driver_message
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
            self._tasks.append(asyncio.create_task(self._listen_forever()))

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

    async def _listen_forever(self) -> None:
        url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # anything committed before LISTEN: poll now
                    async for _notify in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poll loop still runs; reconnect shortly
                _log.info("config notifications unavailable (%s); reconnecting", self._problem(exc))
            await asyncio.sleep(self._interval)
