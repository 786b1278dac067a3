"""`Any.type_url` must be `type.googleapis.com/<full name>`, on a real core: a
payload without the prefix is refused (INVALID_ARGUMENT, one audit record)
with a message saying the prefix is missing, on `OperatorGatewayService.Invoke`
(which accepted it before) and on `EventBusService.Publish` (whose message
named the same type twice)."""

from __future__ import annotations

import pathlib

import grpc
import pytest

from support.clients import audit_rows, error_info
from support.events import USER_CREATED, event_plugin
from support.lane import RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.sdk import envelope
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

INVOKE = "/vivified.gateway.v1.OperatorGatewayService/Invoke"
PUBLISH = "/vivified.events.v1.EventBusService/Publish"


async def test_invoke_refuses_a_type_url_without_the_prefix_saying_so(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    store = RecordingStore()
    target = await started_plugin(core, write_manifest(tmp_path, "typed-target", provides=[RETRIEVE_METHOD]), [store])
    caller = await started_plugin(
        core,
        write_manifest(tmp_path, "typed-caller", calls=[{"plugin_id": "typed-target", "method": RETRIEVE_METHOD}]),
        [RecordingStore()],
    )
    try:
        stub = gateway_pb2_grpc.OperatorGatewayServiceStub(caller.core_channel)
        request = gateway_pb2.InvokeRequest(target_plugin_id="typed-target", method=RETRIEVE_METHOD)
        request.payload.Pack(storage_pb2.RetrieveObjectRequest(object_key="k"))
        request.payload.type_url = "vivified.storage.v1.RetrieveObjectRequest"  # no type.googleapis.com/
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Invoke(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "INVALID_REQUEST"
        message = caught.value.details() or ""
        assert "lacks the 'type.googleapis.com/' prefix" in message
        assert "'type.googleapis.com/vivified.storage.v1.RetrieveObjectRequest'" in message
        assert store.calls == []
        rows = audit_rows(core, actor="plugin:typed-caller", action=INVOKE)
        assert [(r.outcome, r.reason) for r in rows] == [("INVALID_ARGUMENT", "INVALID_REQUEST")]
        # Another message's name is named as such.
        request.payload.type_url = "type.googleapis.com/vivified.storage.v1.StoreObjectRequest"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Invoke(request, timeout=10)
        assert "names 'vivified.storage.v1.StoreObjectRequest', but 'vivified.storage.v1.RetrieveObjectRequest'" in (
            caught.value.details() or ""
        )
        # The canonical form goes through.
        request.payload.type_url = "type.googleapis.com/vivified.storage.v1.RetrieveObjectRequest"
        await stub.Invoke(request, timeout=10)
        assert store.calls == ["RetrieveObject"]
    finally:
        await caller.stop("test over")
        await target.stop("test over")


async def test_publish_refuses_a_type_url_without_the_prefix_saying_so(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(core, tmp_path, "typed-pub", publishes=[USER_CREATED])
    try:
        event = envelope(UserCreated(user_id="u-1"), "no-prefix-1")
        event.payload.type_url = USER_CREATED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await events_pb2_grpc.EventBusServiceStub(publisher.core_channel).Publish(
                events_pb2.PublishRequest(event=event), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "EVENT_PAYLOAD_MISMATCH"
        message = caught.value.details() or ""
        assert "lacks the 'type.googleapis.com/' prefix" in message and "does not match" not in message
        rows = [r for r in audit_rows(core, actor="plugin:typed-pub", action=PUBLISH) if r.outcome != "OK"]
        assert [(r.outcome, r.reason) for r in rows] == [("INVALID_ARGUMENT", "EVENT_PAYLOAD_MISMATCH")]
    finally:
        await publisher.stop()
