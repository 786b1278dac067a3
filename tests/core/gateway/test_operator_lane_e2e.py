"""The operator lane on a real core with real plugins (SDK runtimes over mTLS):
declared calls go through, undeclared ones never reach the target (G1),
responses are redacted for the caller's traits, and every call is one audit
record with target, operation, latency and trace id."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from support.clients import audit_rows, error_info, operator_channel
from support.lane import COMMUNICATION, STORAGE, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.communication.v1 import communication_pb2
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PermissionDeniedError, PluginRuntime, target_metadata
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

INVOKE = "/vivified.gateway.v1.OperatorGatewayService/Invoke"
SEND = f"{COMMUNICATION}/SendMessage"
RETRIEVE = f"{STORAGE}/RetrieveObject"
STORE = f"{STORAGE}/StoreObject"


@dataclass
class Plugins:
    caller: PluginRuntime
    trusted_caller: PluginRuntime
    store: RecordingStore


@pytest_asyncio.fixture
async def plugins(core: CoreProcess, tmp_path: pathlib.Path) -> AsyncIterator[Plugins]:
    echo_manifest = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "example_echo" / "manifest.yaml"
    store = RecordingStore()
    runtimes = [
        await started_plugin(core, echo_manifest, [EchoCommunicationPlugin()]),
        await started_plugin(core, write_manifest(tmp_path, "vault", provides=[RETRIEVE, STORE]), [store]),
    ]
    calls = [
        {"plugin_id": "example-echo", "method": SEND},
        {"plugin_id": "vault", "method": RETRIEVE},
        {"plugin_id": "vault", "method": STORE},
    ]
    caller = await started_plugin(
        core, write_manifest(tmp_path, "lane-caller", calls=calls, traits=["storage_plugin"]), [RecordingStore()]
    )
    trusted = await started_plugin(
        core,
        write_manifest(
            tmp_path,
            "trusted-caller",
            calls=calls[1:2],
            traits=["storage_plugin", "handles_confidential"],
            compliance={"data_classifications": ["CLASSIFICATION_CONFIDENTIAL"]},
        ),
        [RecordingStore()],
    )
    runtimes += [caller, trusted]
    try:
        yield Plugins(caller, trusted, store)
    finally:
        for runtime in runtimes:
            await runtime.stop("test over")


def _send_request(message_id: str) -> communication_pb2.SendMessageRequest:
    return communication_pb2.SendMessageRequest(
        message=communication_pb2.CanonicalMessage(
            message_id=message_id, to_address="a@example.com", subject="hi", content="hello"
        )
    )


async def test_invoke_and_typed_calls_reach_the_target(core: CoreProcess, plugins: Plugins) -> None:
    request = gateway_pb2.InvokeRequest(target_plugin_id="example-echo", method=SEND)
    request.payload.Pack(_send_request("m-1"))
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = await gateway_pb2_grpc.OperatorGatewayServiceStub(plugins.caller.core_channel).Invoke(
        request, timeout=10, metadata=(("traceparent", f"00-{trace}-00f067aa0ba902b7-01"),)
    )
    sent = communication_pb2.SendMessageResponse()
    assert reply.payload.Unpack(sent)
    assert (sent.message_id, sent.status) == ("m-1", communication_pb2.DELIVERY_STATUS_DELIVERED)

    typed = await plugins.caller.call("example-echo", _send_request("m-2"))
    assert typed.message_id == "m-2"
    stub = storage_pb2_grpc.StoragePluginServiceStub(plugins.caller.core_channel)
    stored = await stub.StoreObject(
        storage_pb2.StoreObjectRequest(object=storage_pb2.StoredObject(object_key="k1")),
        metadata=(*target_metadata("vault"), ("traceparent", f"00-{trace}-00f067aa0ba902b7-01")),
        timeout=10,
    )
    assert stored.object_key == "k1"
    assert plugins.store.calls == ["StoreObject"]
    assert plugins.store.metadata[0]["x-vivified-caller"] == "lane-caller"
    # The trace continues into the target.
    assert plugins.store.metadata[0]["traceparent"].split("-")[1] == trace

    rows = audit_rows(core, actor="plugin:lane-caller")
    lane = [r for r in rows if r.action in (INVOKE, f"/{SEND}", f"/{STORE}")]
    assert [r.outcome for r in lane] == ["OK", "OK", "OK"]
    assert lane[0].trace_id == trace
    assert '"target":"example-echo"' in lane[0].detail and '"operation":"' + SEND in lane[0].detail
    assert (
        '"latency_ms"' in lane[0].detail and '"lane_rule":"manifest:lane-caller:calls:example-echo:' in lane[0].detail
    )


async def test_g1_undeclared_call_is_denied_before_the_target(core: CoreProcess, plugins: Plugins) -> None:
    before = len(audit_rows(core, actor="plugin:lane-caller"))
    # The caller declares SendMessage only; GetMessageStatus is provided by the target but not declared.
    with pytest.raises(PermissionDeniedError) as denied:
        await plugins.caller.call("example-echo", communication_pb2.GetMessageStatusRequest(message_id="m-1"))
    assert denied.value.reason == "POLICY_DENIED"
    # trusted-caller declares nothing for StoreObject.
    stub = storage_pb2_grpc.StoragePluginServiceStub(plugins.trusted_caller.core_channel)
    with pytest.raises(grpc.aio.AioRpcError) as direct:
        await stub.StoreObject(storage_pb2.StoreObjectRequest(), metadata=target_metadata("vault"), timeout=10)
    assert direct.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(direct.value)
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "default-deny")
    assert plugins.store.calls == []
    rows = audit_rows(core, actor="plugin:lane-caller")[before:]
    assert [(r.decision, r.reason, r.rule_id) for r in rows] == [("deny", "POLICY_DENIED", "default-deny")]
    denied_rows = [r for r in audit_rows(core, actor="plugin:trusted-caller") if r.action == f"/{STORE}"]
    assert [(r.decision, r.outcome) for r in denied_rows] == [("deny", "PERMISSION_DENIED")]


async def test_payload_type_must_match_the_method(plugins: Plugins) -> None:
    request = gateway_pb2.InvokeRequest(target_plugin_id="example-echo", method=SEND)
    request.payload.Pack(storage_pb2.RetrieveObjectRequest(object_key="x"))
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await gateway_pb2_grpc.OperatorGatewayServiceStub(plugins.caller.core_channel).Invoke(request, timeout=10)
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(wrong.value).reason == "INVALID_REQUEST"
    request.method = "vivified.nothing.v1.NoService/Nope"
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await gateway_pb2_grpc.OperatorGatewayServiceStub(plugins.caller.core_channel).Invoke(request, timeout=10)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_response_fields_redacted_for_callers_without_the_trait(core: CoreProcess, plugins: Plugins) -> None:
    plain = await plugins.caller.call("vault", storage_pb2.RetrieveObjectRequest(object_key="doc"))
    assert plain.object.object_key == "doc" and plain.object.content == b""
    trusted = await plugins.trusted_caller.call("vault", storage_pb2.RetrieveObjectRequest(object_key="doc"))
    assert trusted.object.content == b"CONFIDENTIAL-CANARY"
    row = [r for r in audit_rows(core, actor="plugin:lane-caller") if r.action == f"/{RETRIEVE}"][-1]
    assert '"redacted":"object.content"' in row.detail
    assert all("CONFIDENTIAL-CANARY" not in (r.detail or "") for r in audit_rows(core))


async def test_disabled_target_is_promptly_unavailable(core: CoreProcess, plugins: Plugins) -> None:
    async with operator_channel(core) as channel:
        admin = admin_grpc.PluginAdminServiceStub(channel)
        await admin.DisablePlugin(admin_pb.DisablePluginRequest(plugin_id="vault"), timeout=5)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await storage_pb2_grpc.StoragePluginServiceStub(plugins.caller.core_channel).RetrieveObject(
                    storage_pb2.RetrieveObjectRequest(object_key="x"), metadata=target_metadata("vault"), timeout=10
                )
        finally:
            await admin.EnablePlugin(admin_pb.EnablePluginRequest(plugin_id="vault"), timeout=5)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(gone.value).reason == "TARGET_UNAVAILABLE"
    assert "disabled" in (gone.value.details() or "")
    assert plugins.store.calls == []
