"""The harness the event store tests run each backend behind: `make(**config)`
opens a started store, `elapse(s)` lets `s` seconds pass for its timers (a
manual clock for the embedded store; real time for Redis, whose idle times and
expiries are the server's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from vivified.core.events._config import EventsConfig
from vivified.core.events._store import EventStore

# Short timers keep the suite fast; Redis's are real time.
TEST_CONFIG: dict[str, Any] = {
    "ack_timeout_seconds": 0.5,
    "max_attempts": 3,
    "dedupe_window_seconds": 0.6,
    "store_timeout_seconds": 1.0,
}


@dataclass
class Backend:
    open: Callable[[Callable[[], EventsConfig]], Awaitable[EventStore]]
    elapse: Callable[[float], Awaitable[None]]
    stores: list[EventStore] = field(default_factory=list)

    async def make(self, **overrides: Any) -> EventStore:
        config = EventsConfig(**{**TEST_CONFIG, **overrides})
        return await self.make_live(lambda: config)

    async def make_live(self, current: Callable[[], EventsConfig]) -> EventStore:
        """A store reading `current()` at each use, as the core's live settings give it."""
        store = await self.open(current)
        self.stores.append(store)
        return store
