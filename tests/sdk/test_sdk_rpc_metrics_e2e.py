"""The SDK's RPC duration histograms over OTLP/gRPC to a real receiver on
loopback: a brokered call from a caller plugin (this test's process) through a
real core to a target plugin process. The target exports `rpc.server.duration`
for the call it served, the caller `rpc.client.duration` for the call it made
(and for the one the core refused), by service, method and gRPC code; no
request field reaches a label or the resource (L2)."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio

from support.clients import approve
from support.lane import RETRIEVE_METHOD, STORAGE, RecordingStore, plugin_state, started_plugin, write_manifest
from support.otlp_receiver import ReceivedHistogramPoint, RunningReceiver, start_receiver
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.sdk import PermissionDeniedError, PluginRuntime, load_manifest
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

TESTS = pathlib.Path(__file__).resolve().parents[1]
CANARY_KEY = "canary-object-key-PHI-3f9a1c"
OK, PERMISSION_DENIED = grpc.StatusCode.OK.value[0], grpc.StatusCode.PERMISSION_DENIED.value[0]


@pytest.fixture(scope="module")
def receiver() -> Iterator[RunningReceiver]:
    running = start_receiver()
    yield running
    running.server.stop(0)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    # The core exports nothing here (its own RPC histograms are Prometheus, on --metrics).
    with core_running(tmp_path_factory.mktemp("core") / "data", "--heartbeat-interval", "1", env=clean_env()) as core:
        yield core


@pytest_asyncio.fixture
async def caller(
    core: CoreProcess, receiver: RunningReceiver, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PluginRuntime]:
    for key, value in receiver.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    manifest = write_manifest(
        tmp_path, "metric-caller", calls=[{"plugin_id": "metric-target", "method": RETRIEVE_METHOD}]
    )
    runtime = await started_plugin(core, manifest, [RecordingStore()])
    try:
        yield runtime
    finally:
        await runtime.stop("test over")


def latest(
    points: list[ReceivedHistogramPoint], name: str, pid: int, **attributes: object
) -> ReceivedHistogramPoint | None:
    """The last exported point of `name` from process `pid` with exactly `attributes`."""
    found = [
        p for p in points if p.name == name and p.resource.get("process.pid") == pid and p.attributes == attributes
    ]
    return found[-1] if found else None


async def test_l2_sdk_rpc_durations_of_a_brokered_call_arrive_by_service_method_and_code(
    core: CoreProcess, receiver: RunningReceiver, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    manifest_path = write_manifest(tmp_path, "metric-target", provides=[RETRIEVE_METHOD])
    approval = await approve(core, load_manifest(manifest_path), replace=True)
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest_path),
        VIVIFIED_JOIN_TOKEN=approval.join_token,
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"),
        VIVIFIED_CORE_ADDRESS=core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=core.bootstrap_address,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **receiver.env,
    )
    target = spawn([sys.executable, "-m", "support.lane_plugin_main"], env, tmp_path / "target.log")
    rpc = {"rpc.system": "grpc", "rpc.service": STORAGE, "rpc.method": "RetrieveObject"}
    try:

        async def healthy() -> bool:
            state = await plugin_state(core, "metric-target")
            return bool(state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY)

        await until(healthy, 30, "metric-target to become healthy")
        await caller.call("metric-target", storage_pb2.RetrieveObjectRequest(object_key=CANARY_KEY), timeout=10)
        with pytest.raises(PermissionDeniedError):
            await caller.call("not-declared", storage_pb2.RetrieveObjectRequest(object_key=CANARY_KEY), timeout=10)

        def arrived() -> bool:
            points = receiver.metrics.snapshot()
            server = latest(points, "rpc.server.duration", target.pid, **rpc, **{"rpc.grpc.status_code": OK})
            client = latest(
                points,
                "rpc.client.duration",
                os.getpid(),
                **rpc,
                **{"rpc.grpc.status_code": OK, "vivified.target": "metric-target"},
            )
            denied = latest(
                points,
                "rpc.client.duration",
                os.getpid(),
                **rpc,
                **{"rpc.grpc.status_code": PERMISSION_DENIED, "vivified.target": "not-declared"},
            )
            return bool(server and client and denied)

        await until(arrived, 10, "the caller's and the target's RetrieveObject histograms")
    finally:
        stop_process(target)
    points = receiver.metrics.snapshot()
    server = latest(points, "rpc.server.duration", target.pid, **rpc, **{"rpc.grpc.status_code": OK})
    client = latest(
        points,
        "rpc.client.duration",
        os.getpid(),
        **rpc,
        **{"rpc.grpc.status_code": OK, "vivified.target": "metric-target"},
    )
    assert server is not None and client is not None
    # Exactly the one call each side, in milliseconds; the caller's covers the target's.
    assert (server.count, client.count) == (1, 1)
    assert server.unit == client.unit == "ms"
    assert 0 < server.sum <= client.sum < 10_000
    assert server.resource["service.name"] == server.resource["vivified.plugin_id"] == "metric-target"
    assert client.resource["vivified.plugin_id"] == "metric-caller"
    # The target also timed the core's lifecycle and health calls; the core's heartbeats show on the caller side.
    served = {p.attributes["rpc.service"] for p in points if p.resource.get("process.pid") == target.pid}
    assert {"vivified.lifecycle.v1.PluginLifecycleService", STORAGE} <= served
    assert any(
        p.attributes.get("rpc.method") == "Heartbeat" and p.resource.get("process.pid") == os.getpid() for p in points
    )
    # Only these attribute keys anywhere, and the request's field in no export at all.
    keys = set().union(*(p.attributes.keys() for p in points))
    assert keys <= {"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code", "vivified.target"}
    assert CANARY_KEY.encode() not in b"".join(receiver.metrics.raw)
