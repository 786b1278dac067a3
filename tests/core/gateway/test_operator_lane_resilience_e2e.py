"""Operator-lane resilience on a real core (docs/security.md G2, G3): deadlines are
capped and cancel the callee, a crashed callee gives a prompt UNAVAILABLE,
only idempotent operations are retried, the circuit opens and recovers, and
one slow callee does not slow calls to a healthy one."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio

from support.clients import approve, audit_rows
from support.lane import (
    RETRIEVE_METHOD,
    RecordingStore,
    plugin_state,
    started_plugin,
    until,
    write_manifest,
)
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.communication.v1 import communication_pb2
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PluginRuntime, UnavailableError, VivifiedSDKError, load_manifest
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]

STORE_METHOD = "vivified.storage.v1.StoragePluginService/StoreObject"
SEND_METHOD = "vivified.communication.v1.CommunicationPluginService/SendMessage"
ECHO_MANIFEST = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "example_echo" / "manifest.yaml"


@pytest.fixture
def lane_core(tmp_path: pathlib.Path) -> Iterator[CoreProcess]:
    with core_running(
        tmp_path / "data", "--heartbeat-interval", "1", "--max-call-deadline", "1.5", "--breaker-cooldown", "1"
    ) as core:
        yield core


@pytest_asyncio.fixture
async def caller(lane_core: CoreProcess, tmp_path: pathlib.Path) -> AsyncIterator[PluginRuntime]:
    calls = [{"plugin_id": t, "method": m} for t in ("slow", "crashy") for m in (RETRIEVE_METHOD, STORE_METHOD)]
    calls.append({"plugin_id": "example-echo", "method": SEND_METHOD})
    runtime = await started_plugin(lane_core, write_manifest(tmp_path, "caller", calls=calls), [RecordingStore()])
    try:
        yield runtime
    finally:
        await runtime.stop("test over")


@pytest.mark.serial
async def test_g2_deadline_is_capped_and_the_callee_is_cancelled(
    lane_core: CoreProcess, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    slow = RecordingStore(delay=10)
    target = await started_plugin(
        lane_core, write_manifest(tmp_path, "slow", provides=[RETRIEVE_METHOD, STORE_METHOD]), [slow]
    )
    try:
        started = time.monotonic()
        with pytest.raises(VivifiedSDKError) as late:
            # The caller allows 8 s; the core caps it at --max-call-deadline 1.5 s.
            await caller.call("slow", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=8)
        elapsed = time.monotonic() - started
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 1.3 < elapsed < 3.0, elapsed
        await asyncio.wait_for(slow.cancelled.wait(), timeout=3)
        assert slow.calls == ["RetrieveObject"]  # a deadline is not retried into a slow callee

        slow.cancelled.clear()
        started = time.monotonic()
        with pytest.raises(VivifiedSDKError) as short:
            await caller.call("slow", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=0.5)
        assert short.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.3
        await asyncio.wait_for(slow.cancelled.wait(), timeout=3)
    finally:
        await target.stop("test over")


async def test_only_idempotent_operations_are_retried(
    lane_core: CoreProcess, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    failing = RecordingStore(fail_with=grpc.StatusCode.UNAVAILABLE)
    target = await started_plugin(
        lane_core, write_manifest(tmp_path, "slow", provides=[RETRIEVE_METHOD, STORE_METHOD]), [failing]
    )
    try:
        with pytest.raises(UnavailableError):
            await caller.call("slow", storage_pb2.RetrieveObjectRequest(object_key="k"))
        assert failing.calls == ["RetrieveObject"] * 3  # NO_SIDE_EFFECTS: retried, bounded at 3 attempts
        row = [r for r in audit_rows(lane_core, actor="plugin:caller") if r.outcome == "UNAVAILABLE"][-1]
        assert '"attempts":"3"' in row.detail
    finally:
        await target.stop("test over")


async def test_non_idempotent_operation_is_never_retried(lane_core: CoreProcess, caller: PluginRuntime) -> None:
    class FailingEcho(EchoCommunicationPlugin):
        attempts = 0

        async def SendMessage(self, request: object, context: grpc.aio.ServicerContext) -> object:  # type: ignore[override]
            FailingEcho.attempts += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "provider down")

    echo = await started_plugin(lane_core, ECHO_MANIFEST, [FailingEcho()])
    try:
        with pytest.raises(UnavailableError):
            await caller.call(
                "example-echo",
                communication_pb2.SendMessageRequest(
                    message=communication_pb2.CanonicalMessage(message_id="x", to_address="a@b.c", content="c")
                ),
            )
        assert FailingEcho.attempts == 1
    finally:
        await echo.stop("test over")


async def test_g3_crashed_callee_breaker_opens_and_recovers(
    lane_core: CoreProcess, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    manifest_path = write_manifest(tmp_path, "crashy", provides=[RETRIEVE_METHOD, STORE_METHOD])
    approval = await approve(lane_core, load_manifest(manifest_path), replace=True)
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest_path),
        VIVIFIED_JOIN_TOKEN=approval.join_token,
        VIVIFIED_CA_FILE=str(lane_core.operator_dir / "ca.crt"),
        VIVIFIED_CORE_ADDRESS=lane_core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=lane_core.bootstrap_address,
        LANE_DELAY="5",
        PYTHONPATH=os.pathsep.join(
            [str(pathlib.Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    callee = spawn([sys.executable, "-m", "support.lane_plugin_main"], env, tmp_path / "crashy.log")
    try:

        async def healthy() -> bool:
            state = await plugin_state(lane_core, "crashy")
            return bool(state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY)

        await until(healthy, 30, "the crashy plugin to start")
        in_flight = asyncio.ensure_future(
            caller.call(
                "crashy", storage_pb2.StoreObjectRequest(object=storage_pb2.StoredObject(object_key="k")), timeout=1.4
            )
        )
        await asyncio.sleep(0.5)
        os.kill(callee.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(VivifiedSDKError) as crashed:
            await in_flight
        assert crashed.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert time.monotonic() - killed_at < 1.5

        # Consecutive failures open the circuit; then calls fail fast without a connection attempt.
        codes = []
        for _ in range(6):
            try:
                await caller.call("crashy", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=1.4)
            except VivifiedSDKError as err:
                codes.append(err.reason)
        assert codes[-1] == "TARGET_UNAVAILABLE"
        started = time.monotonic()
        with pytest.raises(UnavailableError) as fast:
            await caller.call("crashy", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=1.4)
        assert fast.value.reason == "TARGET_UNAVAILABLE" and "circuit" in fast.value.message
        assert time.monotonic() - started < 0.3

        # A healthy target is unaffected meanwhile (bulkhead per target).
        echo = await started_plugin(lane_core, ECHO_MANIFEST, [EchoCommunicationPlugin()])
        try:
            started = time.monotonic()
            sent = await caller.call(
                "example-echo",
                communication_pb2.SendMessageRequest(
                    message=communication_pb2.CanonicalMessage(message_id="ok", to_address="a@b.c", content="c")
                ),
            )
            assert sent.message_id == "ok" and time.monotonic() - started < 1.0
        finally:
            await echo.stop("test over")

        # The callee comes back (re-approved, as a supervisor would): after the
        # cooldown a half-open probe succeeds and the circuit closes.
        restarted = await started_plugin(lane_core, manifest_path, [RecordingStore()])
        try:
            await asyncio.sleep(1.1)
            reply = await caller.call("crashy", storage_pb2.RetrieveObjectRequest(object_key="back"), timeout=5)
            assert reply.object.object_key == "back"
        finally:
            await restarted.stop("test over")
    finally:
        stop_process(callee)
