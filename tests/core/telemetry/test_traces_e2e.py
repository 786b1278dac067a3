"""L1: traces exported over OTLP/gRPC to a real receiver on loopback. One
operator call shows caller plugin -> core -> target plugin in one trace, and
one event publisher -> core -> subscriber, each span from its own process with
the right parent."""

from __future__ import annotations

import logging
import os
import pathlib
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio

from support.clients import (
    admitted_plugin,
    approve,
    audit_rows,
    bootstrap_channel,
    error_info,
    operator_channel,
    plugin_channel,
)
from support.lane import RETRIEVE_METHOD, RecordingStore, plugin_state, started_plugin, write_manifest
from support.otlp_receiver import ReceivedSpan, RunningReceiver, start_receiver
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.users import api_key_secret, auth_call, auth_pb, bearer, code_at, login, users_pb
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.options.v1 import options_pb2
from vivified.sdk import PermissionDeniedError, PluginRuntime, load_manifest
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

USER_CREATED = "vivified.events.v1.UserCreated"
STORE_METHOD = "vivified.storage.v1.StoragePluginService/StoreObject"
FETCH = "vivified.egress.v1.EgressProxyService/Fetch"
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
        tmp_path,
        "trace-caller",
        calls=[{"plugin_id": "trace-target", "method": m} for m in (RETRIEVE_METHOD, STORE_METHOD)],
        publishes=[USER_CREATED],
    )
    runtime = await started_plugin(traced_core, manifest, [RecordingStore()])
    try:
        yield runtime
    finally:
        await runtime.stop("test over")


def plugin_process(
    core: CoreProcess, manifest_path: pathlib.Path, token: str, module: str, log: pathlib.Path, **extra: str
) -> object:
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest_path),
        VIVIFIED_JOIN_TOKEN=token,
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"),
        VIVIFIED_CORE_ADDRESS=core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=core.bootstrap_address,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **extra,
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
    target = plugin_process(
        traced_core,
        manifest_path,
        approval.join_token,
        "support.lane_plugin_main",
        tmp_path / "target.log",
        **receiver.env,
    )
    try:
        await healthy(traced_core, "trace-target")
        await caller.call("trace-target", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=10)
        (row,) = audit_rows(traced_core, action=f"/{RETRIEVE_METHOD}", actor="plugin:trace-caller")
        spans = await trace_spans(
            receiver,
            row.trace_id,
            {
                ("trace-caller", RETRIEVE_METHOD),
                ("vivified-core", f"/{RETRIEVE_METHOD}"),
                ("vivified-core", "vivified.gateway/forward"),
                ("trace-target", RETRIEVE_METHOD),
            },
        )
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
    subscriber = plugin_process(
        traced_core,
        manifest_path,
        approval.join_token,
        "support.event_plugin_main",
        tmp_path / "sub.log",
        EVENT_LOG=str(log),
        **receiver.env,
    )
    try:
        await healthy(traced_core, "trace-sub")
        await until(lambda: log.exists() and "opened" in log.read_text(), 15, "the subscription to open")
        await caller.publish(UserCreated(user_id="u-1"), event_id="traced-1")
        await until(lambda: "traced-1 1" in log.read_text(), 15, "the delivery")
        publish = "vivified.events.v1.EventBusService/Publish"
        (row,) = audit_rows(traced_core, action=f"/{publish}", actor="plugin:trace-caller")
        spans = await trace_spans(
            receiver,
            row.trace_id,
            {
                ("trace-caller", publish),
                ("vivified-core", f"/{publish}"),
                ("vivified-core", "vivified.events/store"),
                ("vivified-core", "vivified.events/deliver"),
                ("trace-sub", f"deliver {USER_CREATED}"),
            },
        )
    finally:
        stop_process(subscriber)  # type: ignore[arg-type]
    producer, server = spans[("trace-caller", publish)], spans[("vivified-core", f"/{publish}")]
    store, deliver = (
        spans[("vivified-core", "vivified.events/store")],
        spans[("vivified-core", "vivified.events/deliver")],
    )
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


CANARY_PASSWORD = "Canary-Passw0rd-7d41c9e2b8"
CANARY_EMAIL = "canary.pii.5e0b1f@example.com"
CANARY_NAME = "Canary PII Name 93ad77"
CANARY_PHI = "canary-phi-diagnosis-c41f0e2a"


async def test_l2_canary_values_never_reach_logs_spans_or_metrics(
    traced_core: CoreProcess,
    receiver: RunningReceiver,
    caller: PluginRuntime,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    target_manifest = write_manifest(tmp_path, "trace-target", provides=[RETRIEVE_METHOD, STORE_METHOD])
    target_approval = await approve(traced_core, load_manifest(target_manifest), replace=True)
    sub_manifest = write_manifest(tmp_path, "trace-sub", subscribes=[USER_CREATED])
    sub_approval = await approve(traced_core, load_manifest(sub_manifest), replace=True)
    events = tmp_path / "events.log"
    target = plugin_process(
        traced_core,
        target_manifest,
        target_approval.join_token,
        "support.lane_plugin_main",
        tmp_path / "target.log",
        **receiver.env,
    )
    subscriber = plugin_process(
        traced_core,
        sub_manifest,
        sub_approval.join_token,
        "support.event_plugin_main",
        tmp_path / "sub.log",
        EVENT_LOG=str(events),
        **receiver.env,
    )
    secrets: list[str] = [CANARY_PASSWORD, CANARY_EMAIL, CANARY_NAME, CANARY_PHI]
    try:
        await healthy(traced_core, "trace-target")
        await healthy(traced_core, "trace-sub")
        await until(lambda: events.exists() and "opened" in events.read_text(), 15, "the subscription to open")
        # PII: a user created with a canary email and name; the core publishes UserCreated to the subscriber.
        async with operator_channel(traced_core) as channel:
            created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
                users_pb.CreateUserRequest(
                    username="canary",
                    password=CANARY_PASSWORD,
                    email=CANARY_EMAIL,
                    display_name=CANARY_NAME,
                    roles=["operator"],
                ),
                timeout=10,
            )
        await until(lambda: len(events.read_text().splitlines()) >= 2, 15, "UserCreated delivered")
        # Password, TOTP seed, API key: sign in with the password, enrol TOTP, create and use an API key.
        token = (await login(traced_core, "canary", CANARY_PASSWORD)).tokens.access_token
        secrets.append(token)
        enrolled = await auth_call(traced_core, "EnrollMfa", auth_pb.EnrollMfaRequest(), token)
        secrets.append(enrolled.secret)  # type: ignore[attr-defined]
        await auth_call(
            traced_core, "ConfirmMfa", auth_pb.ConfirmMfaRequest(code=code_at(enrolled.secret, time.time())), token
        )  # type: ignore[attr-defined]
        async with bootstrap_channel(traced_core) as channel:
            key = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
                keys_pb.CreateApiKeyRequest(name="canary", scopes=["plugin_manager", "viewer"]),
                metadata=bearer(token),
                timeout=10,
            )
            secrets += [key.api_key, api_key_secret(key.api_key)]
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                admin_pb.ListPluginsRequest(), metadata=(("x-api-key", key.api_key),), timeout=10
            )
        # PHI: stored through the operator lane to the target plugin.
        await caller.call(
            "trace-target",
            storage_pb2.StoreObjectRequest(
                object=storage_pb2.StoredObject(
                    object_key="canary",
                    content=CANARY_PHI.encode(),
                    classification=options_pb2.CLASSIFICATION_PHI,
                )
            ),
            timeout=10,
        )
        # The exported trace of the lane call has arrived (then everything before it has been flushed too).
        (row,) = audit_rows(traced_core, action=f"/{STORE_METHOD}", actor="plugin:trace-caller")
        await trace_spans(receiver, row.trace_id, {("trace-target", STORE_METHOD)})
        assert created.user.user_id
    finally:
        stop_process(target)  # type: ignore[arg-type]
        stop_process(subscriber)  # type: ignore[arg-type]
    with urllib.request.urlopen(f"http://{traced_core.metrics_address}/metrics", timeout=10) as response:
        metrics = response.read()
    places = {
        "core log": traced_core.log_path.read_bytes(),
        "target log": (tmp_path / "target.log").read_bytes(),
        "subscriber log": (tmp_path / "sub.log").read_bytes(),
        "this process's log": caplog.text.encode(),
        "exported spans and resources": b"".join(receiver.receiver.raw),
        "exported SDK metrics": b"".join(receiver.metrics.raw),
        "metrics": metrics,
    }
    assert len(receiver.receiver.raw) > 3 and b"trace-target" in places["exported spans and resources"]
    assert b"rpc.server.duration" in places["exported SDK metrics"]
    leaks = [(secret, where) for secret in secrets for where, data in places.items() if secret.encode() in data]
    assert leaks == []
    # The publish-to-delivery latency of the UserCreated delivery was observed.
    assert re.search(
        rb'^vivified_events_delivery_latency_seconds_count\{subscription="[^"]*users"\} [1-9]', metrics, re.M
    )


async def test_l1_policy_deny_is_an_event_on_the_core_span_with_its_rule(
    traced_core: CoreProcess, receiver: RunningReceiver, caller: PluginRuntime
) -> None:
    with pytest.raises(PermissionDeniedError) as denied:
        await caller.call("not-declared", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=10)
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED and denied.value.reason == "POLICY_DENIED"
    (row,) = audit_rows(traced_core, actor="plugin:trace-caller", decision="deny")
    assert row.reason == "POLICY_DENIED" and row.rule_id
    spans = await trace_spans(
        receiver,
        row.trace_id,
        {
            ("trace-caller", RETRIEVE_METHOD),
            ("vivified-core", f"/{RETRIEVE_METHOD}"),
        },
    )
    server = spans[("vivified-core", f"/{RETRIEVE_METHOD}")]
    assert server.parent_span_id == spans[("trace-caller", RETRIEVE_METHOD)].span_id
    assert (
        "vivified.policy.deny",
        {"vivified.rule_id": row.rule_id, "vivified.reason": "POLICY_DENIED"},
    ) in server.events
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert ("vivified.gateway", "forward") not in {tuple(n.split("/")) for _, n in spans}


async def test_l1_egress_fetch_has_its_span_and_duration_by_plugin_and_outcome(
    traced_core: CoreProcess, receiver: RunningReceiver
) -> None:
    identity = await admitted_plugin(
        traced_core,
        "trace-egress",
        traits=["communication_plugin", "external_service"],
        security={"allowed_domains": ["api.example.com"]},
    )
    url = "https://other.example.com/private?q=canary-query-6c1d"
    async with plugin_channel(traced_core, identity) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await egress_pb2_grpc.EgressProxyServiceStub(channel).Fetch(
                egress_pb2.FetchRequest(method="GET", url=url), timeout=10
            )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied.value).reason == "EGRESS_DENIED"
    (row,) = audit_rows(traced_core, actor="plugin:trace-egress", action=f"/{FETCH}")
    assert (row.decision, row.reason) == ("deny", "EGRESS_DENIED")
    spans = await trace_spans(
        receiver,
        row.trace_id,
        {
            ("vivified-core", f"/{FETCH}"),
            ("vivified-core", "vivified.egress/fetch"),
        },
    )
    fetch = spans[("vivified-core", "vivified.egress/fetch")]
    assert fetch.parent_span_id == spans[("vivified-core", f"/{FETCH}")].span_id
    assert fetch.attributes == {"vivified.plugin": "trace-egress", "vivified.outcome": "PERMISSION_DENIED"}
    assert b"canary-query-6c1d" not in b"".join(receiver.receiver.raw)
    with urllib.request.urlopen(f"http://{traced_core.metrics_address}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert re.search(
        r'^vivified_egress_fetch_duration_seconds_count\{outcome="PERMISSION_DENIED",'
        r'plugin="trace-egress"\} 1\.0$',
        metrics,
        re.M,
    ), metrics[-2000:]
