"""Fixtures of the event store tests: a session Redis, and each backend behind
one harness (`support.event_backends.Backend`) so one suite runs against both."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
import redis

from support.event_backends import Backend
from support.redis_server import RedisServer, redis_running
from vivified.core.clock import ManualClock, SystemClock
from vivified.core.events._config import EventsConfig
from vivified.core.events._embedded import EmbeddedEventStore
from vivified.core.events._redis import RedisEventStore
from vivified.core.events._store import EventStore


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

        async def open_embedded(config: Callable[[], EventsConfig]) -> EventStore:
            store = EmbeddedEventStore(tmp_path / "events.db", config, clock)
            await store.start()
            return store

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        harness = Backend(open_embedded, advance)
    else:
        server: RedisServer = request.getfixturevalue("clean_redis")

        async def open_redis(config: Callable[[], EventsConfig]) -> EventStore:
            store = RedisEventStore(server.url, config, SystemClock())
            await store.start()
            return store

        harness = Backend(open_redis, asyncio.sleep)
    try:
        yield harness
    finally:
        for store in harness.stores:
            await store.close()
