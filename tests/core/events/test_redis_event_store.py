"""Redis Streams backend only: sharing one Redis between cores, surviving a
Redis crash, a partition (docs/security.md D4), the claim path's delivery count (D2)
and consumers of ended streams being deleted (D6)."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import signal
import time

import pytest
import redis.asyncio as aioredis

from support.redis_server import RedisServer, free_port, redis_running
from support.tcp_proxy import TcpProxy
from vivified.core.clock import SystemClock
from vivified.core.errors import FailedPrecondition, Unavailable
from vivified.core.events._config import EventsConfig
from vivified.core.events._redis import RedisEventStore
from vivified.core.events._store import NewEvent

pytestmark = pytest.mark.asyncio

SUB = "plugin-a/orders"


def config(**overrides: float) -> EventsConfig:
    return EventsConfig(**{"ack_timeout_seconds": 0.5, "max_attempts": 3, "store_timeout_seconds": 0.5, **overrides})


def batch(start: int, n: int) -> list[NewEvent]:
    return [NewEvent(f"e{i}", "OrderPlaced", "src", f"p{i}".encode()) for i in range(start, start + n)]


async def drain(store: RedisEventStore, consumer: str = "c1") -> list[bytes | None]:
    seen: list[bytes | None] = []
    while got := await store.read(SUB, consumer, 100, 0):
        seen += [d.data for d in got]
        await store.ack(SUB, [d.delivery_id for d in got])
    return seen


async def test_two_cores_share_subscriptions_and_events(clean_redis: RedisServer) -> None:
    one = RedisEventStore(clean_redis.url, lambda: config(), SystemClock())
    two = RedisEventStore(clean_redis.url, lambda: config(), SystemClock())
    await one.start()
    await two.start()
    try:
        await one.subscribe(SUB, ["OrderPlaced"])
        await two.subscribe(SUB, ["OrderPlaced"])  # sees it exists, same types
        await two.append(batch(0, 4))
        from_one = await one.read(SUB, "core-1", 2, 0)
        from_two = await two.read(SUB, "core-2", 10, 0)
        assert [d.data for d in from_one] == [b"p0", b"p1"]
        assert [d.data for d in from_two] == [b"p2", b"p3"]  # competing consumers across cores
        # An ack through the other core settles the delivery.
        assert await two.ack(SUB, [d.delivery_id for d in from_one]) == 2
        assert [(e.subscription, e.pending) for e in await one.lag()] == [(SUB, 2)]
        # A blocked read on one core wakes for an append through the other.
        reader = asyncio.create_task(one.read(SUB, "core-1", 10, 5.0))
        await asyncio.sleep(0.1)
        await two.append(batch(10, 1))
        assert [d.data for d in await reader] == [b"p10"]
    finally:
        await one.close()
        await two.close()


async def test_d2_attempts_come_from_the_claim_path_delivery_count(clean_redis: RedisServer) -> None:
    """D2: the attempt a redelivery reports is Redis's delivery count after XCLAIM."""
    store = RedisEventStore(clean_redis.url, lambda: config(max_attempts=3), SystemClock())
    await store.start()
    client = aioredis.Redis.from_url(clean_redis.url)
    try:
        await store.subscribe(SUB, ["OrderPlaced"])
        await store.append(batch(0, 1))
        attempts = []
        for _ in range(3):
            [d] = await store.read(SUB, "c1", 10, 0)
            attempts.append(d.attempt)
            [info] = await client.xpending_range("vivified:events:stream:OrderPlaced", SUB, "-", "+", 10)
            assert info["times_delivered"] == d.attempt
            await asyncio.sleep(0.6)  # ack timeout: the next read claims it
        assert attempts == [1, 2, 3]
        assert await store.read(SUB, "c1", 10, 0) == []
        [dead] = await store.dead_letters(SUB, 10)
        assert (dead.attempts, dead.reason) == (3, "delivery attempts exhausted (3)")
        assert await client.xpending_range("vivified:events:stream:OrderPlaced", SUB, "-", "+", 10) == []
    finally:
        await client.aclose()
        await store.close()


async def test_consumers_of_ended_streams_do_not_accumulate(clean_redis: RedisServer) -> None:
    """D6: every Subscribe stream is one consumer in the group; it is deleted
    when the stream ends with nothing pending, and one that ended holding
    entries is swept once others have claimed them."""
    store = RedisEventStore(clean_redis.url, lambda: config(), SystemClock())
    await store.start()
    client = aioredis.Redis.from_url(clean_redis.url)
    streams = ["vivified:events:stream:OrderPlaced", f"vivified:events:replay:{SUB}"]

    async def consumers() -> set[str]:
        names: set[str] = set()
        for key in streams:
            names |= {c["name"].decode() for c in await client.xinfo_consumers(key, SUB)}
        return names

    try:
        await store.subscribe(SUB, ["OrderPlaced"])
        for cycle in range(20):
            consumer = f"stream-{cycle}"
            await store.append(batch(cycle * 2, 2))
            got = await store.read(SUB, consumer, 10, 0)
            settle, keep = (got[:-1], got[-1:]) if cycle % 2 else (got, [])
            await store.ack(SUB, [d.delivery_id for d in settle])
            await store.nack(SUB, [d.delivery_id for d in keep])  # as a session does with in-flight work
            await store.release(SUB, consumer)
        # Only streams that ended holding a nacked entry are left; the next
        # stream claimed each of those entries.
        assert await consumers() == {f"stream-{cycle}" for cycle in range(1, 20, 2)}
        await asyncio.sleep(0.6)  # idle past the ack timeout
        await store.trim()
        assert await consumers() == {"stream-19"}  # still holds its nacked entry
        [redelivered] = await store.read(SUB, "stream-20", 10, 0)
        await store.ack(SUB, [redelivered.delivery_id])
        await store.release(SUB, "stream-20")
        await asyncio.sleep(0.6)
        await store.trim()
        assert await consumers() == set()
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_acknowledged_events_survive_a_redis_crash_or_restart(
    tmp_path: pathlib.Path, how: signal.Signals
) -> None:
    """Redis (appendfsync always) stopped while appends are in flight: every
    append acknowledged before the stop is there after the restart."""
    with redis_running(tmp_path / "redis") as server:
        store = RedisEventStore(server.url, lambda: config(), SystemClock())
        await store.start()
        await store.subscribe(SUB, ["OrderPlaced"])
        acknowledged: list[bytes] = []

        async def append_until_it_fails() -> None:
            for start in itertools.count(0, 20):
                try:
                    await store.append(batch(start, 20))
                except Unavailable:
                    return
                acknowledged.extend(f"p{i}".encode() for i in range(start, start + 20))

        try:
            appending = asyncio.create_task(append_until_it_fails())
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.stop, how)
            await appending
            assert len(acknowledged) >= 100

            await asyncio.to_thread(server.start)

            # The same store reconnects; what it reads is what Redis kept.
            stored = await drain(store)
            assert set(acknowledged) - set(stored) == set()
            assert stored[: len(acknowledged)] == acknowledged  # and in append order
        finally:
            await store.close()


async def test_d4_a_partitioned_redis_fails_fast_and_loses_nothing_acknowledged(clean_redis: RedisServer) -> None:
    """D4: blackholed Redis -> UNAVAILABLE within the timeout, then fail fast
    (breaker open); after healing, appends succeed and every acknowledged
    event is delivered."""
    proxy = TcpProxy("127.0.0.1", clean_redis.port)
    await proxy.start()
    store = RedisEventStore(
        f"redis://127.0.0.1:{proxy.port}/0", lambda: config(store_timeout_seconds=0.5), SystemClock()
    )
    await store.start()
    try:
        await store.subscribe(SUB, ["OrderPlaced"])
        acknowledged = [a.position for a in await store.append(batch(0, 10))]

        proxy.blackhole()
        for attempt in range(3):
            started = time.monotonic()
            with pytest.raises(Unavailable) as failed:
                await store.append(batch(100 + attempt, 1))
            assert failed.value.reason == "EVENT_STORE_UNAVAILABLE"
            assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises(Unavailable) as fast:
            await store.append(batch(200, 1))
        assert time.monotonic() - started < 0.05  # the breaker is open: no wait at all
        assert "cooldown" in fast.value.message

        proxy.heal()
        await asyncio.sleep(0.6)  # the cooldown (one store timeout)
        acknowledged += [a.position for a in await store.append(batch(300, 10))]

        got = await drain(store)
        expected = {f"p{i}".encode() for i in [*range(10), *range(300, 310)]}
        assert expected <= set(got)  # nothing acknowledged is lost
        assert len(acknowledged) == 20
    finally:
        await store.close()
        await proxy.close()


async def test_errors_never_show_the_url_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisEventStore(f"redis://:s3cret-pass@127.0.0.1:{port}/0", lambda: config(), SystemClock())
    try:
        with pytest.raises(Unavailable) as failed:
            await store.start()
        assert failed.value.reason == "EVENT_STORE_UNAVAILABLE"
        assert f"127.0.0.1:{port}" in failed.value.message
        assert "s3cret" not in failed.value.message and "s3cret" not in repr(failed.value.__cause__)
    finally:
        await store.close()


@pytest.mark.parametrize(("setting", "value"), [("appendonly", "no"), ("maxmemory-policy", "allkeys-lru")])
async def test_a_redis_that_would_lose_acknowledged_events_is_refused(
    clean_redis: RedisServer, setting: str, value: str
) -> None:
    admin = aioredis.Redis.from_url(clean_redis.url)
    before = (await admin.config_get(setting))[setting]
    await admin.config_set(setting, value)
    try:
        store = RedisEventStore(clean_redis.url, lambda: EventsConfig(), SystemClock())
        with pytest.raises(FailedPrecondition) as refused:
            await store.start()
        assert value in refused.value.message and "noeviction" in refused.value.message
        await store.close()
    finally:
        await admin.config_set(setting, before)
        await admin.aclose()
