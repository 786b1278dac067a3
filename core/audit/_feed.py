"""The live feed of audit records: committed records, fanned out to watchers.

One poller per core reads the records committed after the last one it saw
(`seq > last`, oldest first) every `poll_seconds`, but only while at least
one watcher is subscribed; it reads the shared table, so a watcher on one
replica sees the records of every replica that appends to the same chain.
Each watcher has a bounded queue of `buffer` records: a watcher that falls
that far behind (a slow reader, whose writes block on flow control) is cut
off, its `next` raises `WatcherTooSlow`, and the poller never waits for it,
so one slow reader neither grows memory nor holds back the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import sqlalchemy as sa

from vivified.core.audit._record import StoredRecord
from vivified.core.audit._table import audit_table

_log = logging.getLogger(__name__)

_BATCH = 500
"""Most records read per poll; a longer backlog is read over the next polls at once."""


@dataclass(frozen=True)
class WatchFilter:
    """What a watcher wants; empty fields do not filter."""

    decision: str = ""
    outcome: str = ""
    action_prefix: str = ""
    actor: str = ""

    def matches(self, record: StoredRecord) -> bool:
        return (
            (not self.decision or record.decision == self.decision)
            and (not self.outcome or record.outcome == self.outcome)
            and record.action.startswith(self.action_prefix)
            and (not self.actor or record.actor == self.actor)
        )


class WatcherTooSlow(Exception):
    """The watcher's buffer filled: it was cut off."""


_CUT = object()


class Watcher:
    """One subscription: `next()` returns the next matching record."""

    def __init__(self, where: WatchFilter, buffer: int, after_seq: int) -> None:
        self.where = where
        self._after = after_seq
        self._queue: asyncio.Queue[StoredRecord | object] = asyncio.Queue(maxsize=buffer + 1)
        self._buffer = buffer
        self.cut_off = False

    def offer(self, record: StoredRecord) -> None:
        """Called by the poller; never blocks. A full buffer cuts the watcher off."""
        if self.cut_off or record.seq <= self._after or not self.where.matches(record):
            return
        if self._queue.qsize() >= self._buffer:
            self.cut_off = True
            self._queue.put_nowait(_CUT)  # the one slot kept for it
            return
        self._queue.put_nowait(record)

    async def next(self) -> StoredRecord:
        item = await self._queue.get()
        if item is _CUT:
            raise WatcherTooSlow(f"more than {self._buffer} records waited for this watcher")
        assert isinstance(item, StoredRecord)
        return item


def _head(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(audit_table.c.seq), 0))).scalar_one())


def _after(engine: sa.Engine, seq: int) -> list[StoredRecord]:
    select = sa.select(audit_table).where(audit_table.c.seq > seq).order_by(audit_table.c.seq).limit(_BATCH)
    with engine.connect() as conn:
        return [StoredRecord.from_row(row) for row in conn.execute(select).mappings()]


class AuditFeed:
    """Fans committed audit records out to `Watcher`s (see the module docstring)."""

    def __init__(self, engine: sa.Engine, buffer: Callable[[], int], poll_seconds: float = 0.2) -> None:
        self._engine = engine
        self._buffer = buffer
        self._poll = poll_seconds
        self._watchers: set[Watcher] = set()
        self._last = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    @contextlib.asynccontextmanager
    async def watch(self, where: WatchFilter) -> AsyncIterator[Watcher]:
        """A watcher of the records committed from now on, for the `async with` block."""
        head = await asyncio.to_thread(_head, self._engine)
        watcher = Watcher(where, self._buffer(), head)
        if not self._watchers:
            self._last = head
        # A watcher joining a running poller skips what it reads before its own start.
        self._watchers.add(watcher)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="audit-feed")
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
            if not self._watchers and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    async def _run(self) -> None:
        while self._watchers:
            try:
                records = await asyncio.to_thread(_after, self._engine, self._last)
            except Exception:  # noqa: BLE001 - a failed read is retried at the next poll
                _log.exception("audit feed: reading new records failed; retrying")
                records = []
            for record in records:
                for watcher in tuple(self._watchers):
                    watcher.offer(record)
                self._last = record.seq
            if len(records) < _BATCH:
                await asyncio.sleep(self._poll)
