"""The timeout-and-breaker guard both event stores run every operation under."""

from __future__ import annotations

import asyncio

import pytest

from vivified.core.clock import ManualClock
from vivified.core.errors import FailedPrecondition, Unavailable
from vivified.core.events._guard import StoreGuard

pytestmark = pytest.mark.asyncio


def guard(clock: ManualClock) -> StoreGuard:
    return StoreGuard(clock, 0.05, describe="test store", failure_types=(ConnectionError,))


async def fail() -> None:
    raise ConnectionError("refused")


async def test_failures_open_the_breaker_and_a_probe_after_the_cooldown_closes_it() -> None:
    clock = ManualClock()
    g = guard(clock)
    for _ in range(3):
        with pytest.raises(Unavailable) as failed:
            await g.run(fail)
        assert failed.value.reason == "EVENT_STORE_UNAVAILABLE"
        assert "ConnectionError" in failed.value.message
    started = []

    async def never() -> None:
        started.append(True)

    with pytest.raises(Unavailable, match="cooldown"):
        await g.run(never)
    assert started == []  # refused without being started
    clock.advance(0.06)
    assert await g.run(lambda: asyncio.sleep(0, "probe")) == "probe"
    assert await g.run(lambda: asyncio.sleep(0, "closed")) == "closed"


async def test_a_timeout_is_unavailable_and_a_domain_error_passes_through() -> None:
    g = guard(ManualClock())
    with pytest.raises(Unavailable, match="did not answer within 0.05s"):
        await g.run(lambda: asyncio.sleep(1))

    async def refuse() -> None:
        raise FailedPrecondition("no", reason="SUBSCRIPTION_MISMATCH")

    with pytest.raises(FailedPrecondition):
        await g.run(refuse)


async def test_cancelled_waits_do_not_open_the_breaker() -> None:
    g = guard(ManualClock())
    for _ in range(5):
        task = asyncio.create_task(g.run(lambda: asyncio.sleep(0.03), extra_seconds=1.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await g.run(lambda: asyncio.sleep(0, "still closed")) == "still closed"
