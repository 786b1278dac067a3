"""PostgreSQL notifications as a wake-up signal for a poll loop.

Several replicas learn of each other's changes by polling a change log; a
`NOTIFY` on a channel makes them poll at once. The notification is only a
hint: a lost one costs at most the poll interval, so a failed listener just
reconnects while the poll loop keeps running."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import sqlalchemy as sa

from vivified.core.db._errors import describe_url, driver_message

_log = logging.getLogger("vivified.db")


async def wake_on_notify(engine: sa.Engine, channel: str, wake: asyncio.Event, retry_seconds: float) -> None:
    """Set `wake` on every notification on `channel` (and once on each
    (re)connect, for anything committed before LISTEN); runs until cancelled."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as conn:
                await conn.execute(f"LISTEN {channel}")
                wake.set()
                async for _notify in conn.notifies():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the poll loop still runs; reconnect shortly
            _log.info(
                "notifications on %s from %s unavailable (%s); reconnecting",
                channel,
                describe_url(engine.url),
                driver_message(exc, engine.url),
            )
        await asyncio.sleep(retry_seconds)
