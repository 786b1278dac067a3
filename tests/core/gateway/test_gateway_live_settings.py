"""The operator lane's runtime settings apply to a running Forwarder: the
deadline cap to the next call, the breaker cooldown to circuits already open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest
import pytest_asyncio

from support.clients import manifest_message
from vivified.core.clock import ManualClock
from vivified.core.contracts import CONTRACT_METHODS
from vivified.core.errors import Unavailable
from vivified.core.gateway import Forwarder, GatewayConfig, TargetError
from vivified.core.registry import ACTIVE, HEALTHY, PluginRecord

TARGET = "down-plugin"


class DeadConnector:
    """Every channel leads to a closed port: each call fails UNAVAILABLE."""

    def __init__(self) -> None:
        self.channel_ = grpc.aio.insecure_channel("127.0.0.1:1")

    def channel(self, record: PluginRecord) -> grpc.aio.Channel:
        return self.channel_


@pytest_asyncio.fixture
async def connector() -> AsyncIterator[DeadConnector]:
    dead = DeadConnector()
    yield dead
    await dead.channel_.close()


def _record() -> PluginRecord:
    return PluginRecord(
        TARGET, ACTIVE, "0" * 64, manifest_message(TARGET), frozenset(), "1.0.0", "127.0.0.1:1", HEALTHY
    )


@pytest.mark.asyncio
async def test_deadline_cap_and_breaker_cooldown_follow_a_change(connector: DeadConnector) -> None:
    clock = ManualClock()
    current = [GatewayConfig(max_deadline_seconds=30.0, breaker_failures=1, breaker_cooldown_seconds=60.0)]
    forwarder = Forwarder(
        config=lambda: current[0],
        lookup=lambda _: _record(),
        connector=connector,
        clock=clock,  # type: ignore[arg-type]
    )
    assert forwarder.timeout_for(100.0) == 30.0
    current[0] = replace(current[0], max_deadline_seconds=2.5)
    assert (forwarder.timeout_for(100.0), forwarder.timeout_for(None)) == (2.5, 2.5)

    method = next(iter(CONTRACT_METHODS.values()))

    async def forward() -> None:
        await forwarder.forward(TARGET, method, b"", timeout=2.0, retryable=False, metadata=())

    with pytest.raises(TargetError):
        await forward()  # one failure opens the circuit (breaker_failures 1)
    assert forwarder.breaker_states() == {TARGET: "open"}
    clock.advance(10)
    with pytest.raises(Unavailable, match="circuit is open"):
        await forward()  # 10 s of a 60 s cooldown
    current[0] = replace(current[0], breaker_cooldown_seconds=5.0)
    with pytest.raises(TargetError):
        await forward()  # the open circuit now has a 5 s cooldown: a half-open probe goes through
