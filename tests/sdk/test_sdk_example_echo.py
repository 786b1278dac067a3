"""The example echo plugin, called as the core calls it: through the SDK's
server over mTLS with the core's certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc as comm_grpc
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk.testing import FakeCore

pytestmark = pytest.mark.asyncio

PLUGIN = "example-echo"
T0 = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def _stub(fake_core: FakeCore, start_plugin: Any, plugin: EchoCommunicationPlugin) -> tuple[Any, Any]:
    runtime = await start_plugin(servicers=[plugin])
    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    channel = fake_core.plugin_channel(runtime.endpoint, PLUGIN)
    return channel, comm_grpc.CommunicationPluginServiceStub(channel)


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"to_address": "a@x.test", "content": "c"}, "message_id"),
        ({"message_id": "m", "content": "c"}, "to_address"),
        ({"message_id": "m", "to_address": "a@x.test"}, "content"),
        ({}, "message_id, message.to_address, message.content"),
        ({"message_id": "m" * 257, "to_address": "a@x.test", "content": "c"}, "longer than 256"),
    ],
)
async def test_incomplete_messages_are_invalid(
    fake_core: FakeCore, start_plugin: Any, fields: dict[str, str], missing: str
) -> None:
    channel, stub = await _stub(fake_core, start_plugin, EchoCommunicationPlugin())
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.SendMessage(pb.SendMessageRequest(message=pb.CanonicalMessage(**fields)), timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert missing in (invalid.value.details() or "")
    assert reason_of(invalid.value) == "INVALID_REQUEST"


async def test_send_then_status_and_a_reused_id_returns_the_earlier_status(
    fake_core: FakeCore, start_plugin: Any
) -> None:
    clock = StepClock()
    channel, stub = await _stub(fake_core, start_plugin, EchoCommunicationPlugin(clock=clock))
    request = pb.SendMessageRequest(message=pb.CanonicalMessage(message_id="m-1", to_address="a@x.test", content="c"))
    async with channel:
        first = await stub.SendMessage(request, timeout=5)
        clock.now = T0 + dt.timedelta(hours=1)
        again = await stub.SendMessage(request, timeout=5)
        status = await stub.GetMessageStatus(pb.GetMessageStatusRequest(message_id="m-1"), timeout=5)
    assert first == again == pb.SendMessageResponse(message_id="m-1", status=pb.DELIVERY_STATUS_DELIVERED)
    assert (status.message_id, status.status) == ("m-1", pb.DELIVERY_STATUS_DELIVERED)
    assert status.update_time.ToDatetime(tzinfo=dt.UTC) == T0  # not re-sent at the later time


async def test_unknown_and_evicted_ids_are_not_found(fake_core: FakeCore, start_plugin: Any) -> None:
    channel, stub = await _stub(fake_core, start_plugin, EchoCommunicationPlugin(max_messages=2))
    async with channel:
        for message_id in ("a", "b", "c"):
            await stub.SendMessage(
                pb.SendMessageRequest(message=pb.CanonicalMessage(message_id=message_id, to_address="t", content="c")),
                timeout=5,
            )
        for unknown in ("never-sent", "a"):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetMessageStatus(pb.GetMessageStatusRequest(message_id=unknown), timeout=5)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert reason_of(missing.value) == "MESSAGE_NOT_FOUND"
        assert (await stub.GetMessageStatus(pb.GetMessageStatusRequest(message_id="c"), timeout=5)).message_id == "c"


async def test_logs_carry_the_id_and_subject_length_never_the_content(
    fake_core: FakeCore, start_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    canary = pb.CanonicalMessage(
        message_id="m-log",
        from_address="sender-CANARY@x.test",
        to_address="recipient-CANARY@x.test",
        subject="Subject CANARY",
        content="Body CANARY",
    )
    caplog.set_level(logging.DEBUG)
    channel, stub = await _stub(fake_core, start_plugin, EchoCommunicationPlugin())
    async with channel:
        await stub.SendMessage(pb.SendMessageRequest(message=canary), timeout=5)
    plugin_lines = [r.getMessage() for r in caplog.records if r.name.startswith("vivified.plugins.example_echo")]
    assert any("'m-log'" in line and "14 characters" in line for line in plugin_lines)
    assert "CANARY" not in caplog.text
