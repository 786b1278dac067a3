"""L1: traces exported over OTLP/gRPC to a real receiver on loopback. One
operator call shows caller plugin -> core -> target plugin in one trace, and
one event publisher -> core -> subscriber, each span from its own process with
the right parent."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from support.clients import approve, audit_rows
from support.lane import RETRIEVE_METHOD, RecordingStore, plugin_state, started_plugin, write_manifest
from support.otlp_receiver import ReceivedSpan, RunningReceiver, start_receiver
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.sdk import PluginRuntime, load_manifest
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

USER_CREATED = "vivified.events.v1.UserCreated"
TESTS = pathlib.Path(__file__).resolve().parents[2]
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP Span.SpanKind


@pytest.fixture(scope="module")
def receiver() -> Iterator[RunningReceiver]:
    running = start_receiver()
    yield running
    running.server.stop(0)


@pytest.fixture(scope="module")
def traced_core(receiver: RunningReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    env = clean_env(**receiver.env, OTEL_SERVICE_NAME="vivified-core")
    with core_running(tmp_path_factory.mktemp("core") / "data", "--heartbeat-interval", "1", env=env) as core:
        yield core


@pytest_asyncio.fixture
async def caller(
    traced_core: CoreProcess, receiver: RunningReceiver, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PluginRuntime]:
    """An in-process plugin (this test's process) exporting its spans to the receiver."""
    for key, value in receiver.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    manifest = write_manifest(
        tmp_path, "trace-caller", calls=[{"plugin_id": "trace-target", "method": RETRIEVE_METHOD}],
        publishes=[USER_CREATED],
    )
    runtime = await started_plugin(traced_core, manifest, [RecordingStore()])
    try:
        yield runtime
    finally:
        await runtime.stop("test over")


def plugin_process(core: CoreProcess, manifest_path: pathlib.Path, token: str, module: str,
                   log: pathlib.Path, **extra: str) -> object:
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest_path), VIVIFIED_JOIN_TOKEN=token,
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"), VIVIFIED_CORE_ADDRESS=core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=core.bootstrap_address,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **extra,
    )
    return spawn([sys.executable, "-m", module], env, log)


async def healthy(core: CoreProcess, plugin_id: str) -> None:
    async def check() -> bool:
        state = await plugin_state(core, plugin_id)
        return bool(state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY)

    await until(check, 30, f"{plugin_id} to become healthy")


async def trace_spans(
    receiver: RunningReceiver, trace_id: str, names: set[tuple[str, str]]
) -> dict[tuple[str, str], ReceivedSpan]:
    """The spans of `trace_id` by (service, name), once all of `names` have arrived
    (each exactly once)."""
    found: dict[tuple[str, str], ReceivedSpan] = {}

    async def arrived() -> bool:
        spans = [s for s in receiver.receiver.snapshot() if s.trace_id == trace_id]
        found.clear()
        found.update({(s.resource["service.name"], s.name): s for s in spans})
        assert len(found) == len(spans), "a span was exported twice or two spans share a name"
        return names <= found.keys()

    await until(arrived, 15, f"spans {sorted(names)} of trace {trace_id}")
    return found


async def test_l1_operator_call_is_one_trace_over_three_processes(
    traced_core: CoreProcess, receiver: RunningReceiver, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    manifest_path = write_manifest(tmp_path, "trace-target", provides=[RETRIEVE_METHOD])
    approval = await approve(traced_core, load_manifest(manifest_path), replace=True)
    target = plugin_process(traced_core, manifest_path, approval.join_token, "support.lane_plugin_main",
                            tmp_path / "target.log", **receiver.env)
    try:
        await healthy(traced_core, "trace-target")
        await caller.call("trace-target", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=10)
        (row,) = audit_rows(traced_core, action=f"/{RETRIEVE_METHOD}", actor="plugin:trace-caller")
        spans = await trace_spans(receiver, row.trace_id, {
            ("trace-caller", RETRIEVE_METHOD), ("vivified-core", f"/{RETRIEVE_METHOD}"),
            ("vivified-core", "vivified.gateway/forward"), ("trace-target", RETRIEVE_METHOD),
        })
    finally:
        stop_process(target)  # type: ignore[arg-type]
    assert len(spans) == 4
    client = spans[("trace-caller", RETRIEVE_METHOD)]
    server = spans[("vivified-core", f"/{RETRIEVE_METHOD}")]
    forward = spans[("vivified-core", "vivified.gateway/forward")]
    target_span = spans[("trace-target", RETRIEVE_METHOD)]
    # One span per process, parent links caller -> core server -> core forward -> target.
    assert client.kind == CLIENT and client.parent_span_id == ""
    assert server.kind == SERVER and server.parent_span_id == client.span_id
    assert forward.kind == CLIENT and forward.parent_span_id == server.span_id
    assert target_span.kind == SERVER and target_span.parent_span_id == forward.span_id
    assert target_span.name == RETRIEVE_METHOD
    assert client.resource["process.pid"] == os.getpid()
    assert server.resource["service.name"] == "vivified-core"
    assert server.resource["process.pid"] == traced_core.process.pid
    assert target_span.resource["process.pid"] == target.pid  # type: ignore[attr-defined]
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert ("vivified.audit.commit", {"vivified.audit.outcome": "OK"}) in server.events
    assert forward.attributes["vivified.target"] == "trace-target"


async def test_l1_event_is_one_trace_from_publisher_to_subscriber(
    traced_core: CoreProcess, receiver: RunningReceiver, caller: PluginRuntime, tmp_path: pathlib.Path
) -> None:
    manifest_path = write_manifest(tmp_path, "trace-sub", subscribes=[USER_CREATED])
    approval = await approve(traced_core, load_manifest(manifest_path), replace=True)
    log = tmp_path / "events.log"
    subscriber = plugin_process(traced_core, manifest_path, approval.join_token, "support.event_plugin_main",
                                tmp_path / "sub.log", EVENT_LOG=str(log), **receiver.env)
    try:
        await healthy(traced_core, "trace-sub")
        await until(lambda: log.exists() and "opened" in log.read_text(), 15, "the subscription to open")
        await caller.publish(UserCreated(user_id="u-1"), event_id="traced-1")
        await until(lambda: "traced-1 1" in log.read_text(), 15, "the delivery")
        publish = "vivified.events.v1.EventBusService/Publish"
        (row,) = audit_rows(traced_core, action=f"/{publish}", actor="plugin:trace-caller")
        spans = await trace_spans(receiver, row.trace_id, {
            ("trace-caller", publish), ("vivified-core", f"/{publish}"), ("vivified-core", "vivified.events/store"),
            ("vivified-core", "vivified.events/deliver"), ("trace-sub", f"deliver {USER_CREATED}"),
        })
    finally:
        stop_process(subscriber)  # type: ignore[arg-type]
    producer, server = spans[("trace-caller", publish)], spans[("vivified-core", f"/{publish}")]
    store, deliver = spans[("vivified-core", "vivified.events/store")], spans[("vivified-core", "vivified.events/deliver")]
    handler = spans[("trace-sub", f"deliver {USER_CREATED}")]
    assert producer.kind == PRODUCER and producer.parent_span_id == ""
    assert producer.resource["process.pid"] == os.getpid()
    assert server.kind == SERVER and server.parent_span_id == producer.span_id
    assert store.parent_span_id == server.span_id
    assert deliver.kind == PRODUCER and deliver.parent_span_id == server.span_id
    assert deliver.attributes["vivified.subscription"].endswith("users")
    assert {server.resource["process.pid"], store.resource["process.pid"], deliver.resource["process.pid"]} == {
        traced_core.process.pid
    }
    assert handler.kind == CONSUMER and handler.parent_span_id == deliver.span_id
    assert handler.resource["service.name"] == "trace-sub"
    assert handler.resource["process.pid"] == subscriber.pid  # type: ignore[attr-defined]
