"""Client-side group commit for a networked store: appends that arrive while a
round trip is in flight go together in the next one, so many concurrent
single-event publishes cost a few pipelines instead of one round trip each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from vivified.core.events._store import Appended, NewEvent

Send = Callable[[list[NewEvent]], Awaitable[list[Appended]]]


class AppendCoalescer:
    """Queues appends and sends them, in arrival order, one batch at a time."""

    def __init__(self, send: Send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout
        self._queued: list[tuple[list[NewEvent], asyncio.Future[list[Appended]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._queued.append((list(events), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                events = [event for chunk, _ in batch for event in chunk]
                try:
                    # Bounded, so a silent store cannot hold the queue forever;
                    # every caller's own deadline still applies on top.
                    results = await asyncio.wait_for(self._send(events), self._timeout)
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                offset = 0
                for chunk, future in batch:
                    if not future.done():
                        future.set_result(results[offset : offset + len(chunk)])
                    offset += len(chunk)
        finally:
            self._flusher = None
