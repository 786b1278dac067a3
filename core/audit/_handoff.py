"""Handing results from the writer thread back to the callers' event loops.

asyncio futures are not thread-safe: the writer may only touch them through
`loop.call_soon_threadsafe`. It does so once per loop per batch, so a batch of
500 records costs one wake-up of the loop, not 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

from vivified.core.audit._record import AuditRecord, StoredRecord

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Pending:
    """One queued append: the record, its event time, and who waits for it."""

    record: AuditRecord
    time: dt.datetime
    future: asyncio.Future[StoredRecord]
    loop: asyncio.AbstractEventLoop


def settle(
    batch: list[Pending], stored: list[StoredRecord] | None, error: BaseException | None
) -> None:
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
