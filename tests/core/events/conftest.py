"""Both event store backends behind one harness, so one behavioural suite runs
against each: `backend.make(**config)` opens a started store, `backend.elapse(s)`
lets `s` seconds pass for its timers (a manual clock for the embedded store;
real time for Redis, whose idle times and expiries are the server's)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import redis

from support.redis_server import RedisServer, redis_running
from vivified.core.clock import ManualClock, SystemClock
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._redis import RedisEventStore
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
    kind: str
    open: Callable[[EventsConfig], Awaitable[EventStore]]
    elapse: Callable[[float], Awaitable[None]]
    stores: list[EventStore] = field(default_factory=list)

    async def make(self, **overrides: Any) -> EventStore:
        store = await self.open(EventsConfig(**{**TEST_CONFIG, **overrides}))
        self.stores.append(store)
        return store


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_running(tmp_path_factory.mktemp("redis")) as server:
        yield server


def flush(server: RedisServer) -> None:
    with redis.Redis.from_url(server.url) as client:
        client.flushall()


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied."""
    flush(redis_server)
    return redis_server


@pytest_asyncio.fixture(params=["embedded", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        clock = ManualClock()

        async def open_embedded(config: EventsConfig) -> EventStore:
            store = EmbeddedEventStore(tmp_path / "events.db", config, clock)
            await store.start()
            return store

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        harness = Backend("embedded", open_embedded, advance)
    else:
        server: RedisServer = request.getfixturevalue("clean_redis")

        async def open_redis(config: EventsConfig) -> EventStore:
            store = RedisEventStore(server.url, config, SystemClock())
            await store.start()
            return store

        harness = Backend("redis", open_redis, asyncio.sleep)
    try:
        yield harness
    finally:
        for store in harness.stores:
            await store.close()
