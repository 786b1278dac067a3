"""Per-target concurrency limit, so one slow plugin cannot take every worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vivified.core.errors import ResourceExhausted


class Bulkheads:
    """At most `limit` calls in flight per target; at most as many again waiting."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._admitted: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, target: str) -> AsyncIterator[None]:
        admitted = self._admitted.get(target, 0)
        if admitted >= 2 * self._limit:
            raise ResourceExhausted(
                f"too many calls to {target!r} in flight; retry later",
                reason="TARGET_BUSY",
                domain="vivified.gateway",
            )
        semaphore = self._slots.setdefault(target, asyncio.Semaphore(self._limit))
        self._admitted[target] = admitted + 1
        try:
            async with semaphore:
                yield
        finally:
            self._admitted[target] -= 1
