"""Per-target concurrency limit, so one slow plugin cannot take every worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vivified.core.errors import ResourceExhausted

_DOMAIN = "vivified.gateway"


def _busy(target: str, why: str) -> ResourceExhausted:
    return ResourceExhausted(f"too many calls to {target!r} {why}; retry later", reason="TARGET_BUSY", domain=_DOMAIN)


class Bulkheads:
    """At most `limit` calls in flight per target; at most as many again waiting.

    A waiting call waits no longer than the `wait_seconds` it is given (what
    its deadline leaves, less a margin to send the answer): a call still
    queued then is refused with TARGET_BUSY while its caller is listening,
    instead of running into its deadline and being cancelled unanswered."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._admitted: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, target: str, wait_seconds: float) -> AsyncIterator[None]:
        admitted = self._admitted.get(target, 0)
        if admitted >= 2 * self._limit:
            raise _busy(target, "in flight")
        semaphore = self._slots.setdefault(target, asyncio.Semaphore(self._limit))
        self._admitted[target] = admitted + 1
        try:
            if not semaphore.locked():
                await semaphore.acquire()  # a slot is free: taken at once, no timer to arm
            else:
                try:
                    async with asyncio.timeout(max(wait_seconds, 0.0)):
                        await semaphore.acquire()
                except TimeoutError:
                    raise _busy(target, "in flight: no slot freed within the call's deadline") from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            self._admitted[target] -= 1
