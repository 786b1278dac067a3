"""Handing records to the writer thread, and results back to the callers' event loops.

Into the writer: `Outbox` collects the appends one event-loop iteration
makes and puts them on the writer's queue as one list, from a callback the
loop runs once per iteration. Sixty-four calls that finish in the same
iteration thus cost one queue put and one wake-up of the writer, not 64, and
the writer commits them as one batch. Nothing waits on a timer: the records
leave at the end of the iteration that made them.

Back to the callers: asyncio futures are not thread-safe, so the writer only
touches them through `loop.call_soon_threadsafe`. It does so once per loop
per batch, so a batch of 500 records costs one wake-up of the loop, not 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable

from vivified.core.audit._record import AuditRecord, StoredRecord

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Pending:
    """One queued append: the record, its event time, and who waits for it."""

    record: AuditRecord
    time: dt.datetime
    future: asyncio.Future[StoredRecord]
    loop: asyncio.AbstractEventLoop


class Outbox:
    """Per event loop, the appends of the current loop iteration, handed to
    `put` as one list (in append order) when the loop runs its callbacks."""

    def __init__(self, put: Callable[[list[Pending]], None]) -> None:
        self._put = put
        self._lock = threading.Lock()  # loops on other threads may append too
        self._open: dict[asyncio.AbstractEventLoop, list[Pending]] = {}

    def add(self, pending: Pending) -> None:
        loop = pending.loop
        with self._lock:
            items = self._open.get(loop)
            if items is None:
                items = self._open[loop] = []
                loop.call_soon(self._hand_over, loop)
            items.append(pending)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            items = self._open.pop(loop, None)
        if items:
            self._put(items)

    def flush(self) -> None:
        """Hand over everything collected so far, now (before the writer stops)."""
        with self._lock:
            lists, self._open = list(self._open.values()), {}
        for items in lists:
            if items:
                self._put(items)


def settle(batch: list[Pending], stored: list[StoredRecord] | None, error: BaseException | None) -> None:
    """Resolve every future of `batch`: with its stored record after a commit,
    or with `error` when the batch was not committed."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[int, Pending]]] = {}
    for index, pending in enumerate(batch):
        by_loop.setdefault(pending.loop, []).append((index, pending))

    def resolve(items: list[tuple[int, Pending]]) -> None:
        for index, pending in items:
            if pending.future.done():  # the caller was cancelled
                continue
            if stored is not None:
                pending.future.set_result(stored[index])
            elif error is not None:
                pending.future.set_exception(error)

    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(resolve, items)
        except RuntimeError:
            _log.warning("audit caller's event loop closed before its result")
