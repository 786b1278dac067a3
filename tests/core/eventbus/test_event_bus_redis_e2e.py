"""The event bus on Redis Streams with real core processes: two cores sharing one
Redis, Redis partitioned away from a running core, and a core that cannot reach
Redis at start."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from support.events import USER_CREATED, Inbox, event_plugin
from support.processes import (
    clean_env,
    core_running,
    run_vivified,
    start_core,
    stop_process,
)
from support.redis_server import redis_running
from support.tcp_proxy import TcpProxy
from support.waiting import until
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.sdk import UnavailableError

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


async def test_subscriber_on_one_core_receives_what_is_published_through_another(tmp_path: pathlib.Path) -> None:
    with redis_running(tmp_path / "redis") as redis_server:
        flags = ("--heartbeat-interval", "1", "--redis-url", redis_server.url)
        with core_running(tmp_path / "a", *flags) as core_a, core_running(tmp_path / "b", *flags) as core_b:
            subscriber = await event_plugin(core_b, tmp_path, "far-sub", subscribes=[USER_CREATED])
            publisher = await event_plugin(core_a, tmp_path, "near-pub", publishes=[USER_CREATED])
            try:
                inbox = Inbox()
                await subscriber.subscribe("users", {UserCreated: inbox}).opened()
                for index in range(20):
                    await publisher.publish(UserCreated(user_id=str(index)), event_id=f"x-{index}")
                await until(lambda: len(inbox.received) >= 20, 15, "deliveries through the other core")
                assert inbox.event_ids() == [f"x-{i}" for i in range(20)]
                assert {e.event.source_plugin_id for _, e in inbox.received} == {"near-pub"}
            finally:
                await publisher.stop()
                await subscriber.stop()


async def test_d4_partitioned_redis_fails_publishes_fast_and_loses_nothing_after_healing(
    tmp_path: pathlib.Path,
) -> None:
    with redis_running(tmp_path / "redis") as redis_server:
        proxy = TcpProxy("127.0.0.1", int(redis_server.url.rsplit(":", 1)[1].split("/")[0]))
        await proxy.start()
        url = f"redis://127.0.0.1:{proxy.port}/0"
        # Started from a thread: the proxy forwards on this test's event loop.
        core = await asyncio.to_thread(
            start_core, tmp_path / "data", "--heartbeat-interval", "1", "--event-ack-timeout", "2", "--redis-url", url
        )
        publisher = await event_plugin(core, tmp_path, "part-pub", publishes=[USER_CREATED])
        subscriber = await event_plugin(core, tmp_path, "part-sub", subscribes=[USER_CREATED])
        try:
            inbox = Inbox()
            await subscriber.subscribe("users", {UserCreated: inbox}).opened()
            await publisher.publish(UserCreated(user_id="before"), event_id="before")
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(UnavailableError) as caught:
                await publisher.publish(UserCreated(user_id="during"), event_id="during", timeout=10)
            assert caught.value.reason == "EVENT_STORE_UNAVAILABLE"
            assert time.monotonic() - started < 5
            proxy.heal()

            async def republished() -> bool:
                try:
                    await publisher.publish(UserCreated(user_id="during"), event_id="during", timeout=10)
                except UnavailableError:
                    return False
                return True

            await until(republished, 20, "publishes to work again")
            # Whatever was in flight when the partition began is redelivered after the ack timeout.
            await until(lambda: {"before", "during"} <= set(inbox.event_ids()), 15, "both events after healing")
        finally:
            proxy.heal()
            await publisher.stop()
            await subscriber.stop()
            await asyncio.to_thread(stop_process, core.process)
            await proxy.close()


async def test_core_refuses_to_start_when_redis_is_unreachable(tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    result = run_vivified(
        "core",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--redis-url",
        "redis://:hunter2secret@127.0.0.1:1/0",
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode != 0
    assert "event store" in result.stderr and "EVENT_STORE_UNAVAILABLE" not in result.stdout
    assert "hunter2secret" not in result.stderr + result.stdout
    assert time.monotonic() - started < 30
