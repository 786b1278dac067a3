"""The echo plugin as it is deployed: `python -m vivified.plugins.example_echo`
as its own process under `vivified.sdk.testing.LocalCore` (a real core
process, mTLS, the interceptor chain), called through the operator lane by
LocalCore's tester: SendMessage marks a message delivered, GetMessageStatus
reports it, a reused id returns the earlier status, an unknown id and an
incomplete message are refused with typed errors."""

from __future__ import annotations

import pathlib
import sys
from importlib import resources

import grpc
import pytest

from support.clients import audit_rows
from support.processes import core_view
from vivified.communication.v1 import communication_pb2 as pb
from vivified.sdk import InvalidArgumentError, NotFoundError
from vivified.sdk.testing import LocalCore

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
MANIFEST = pathlib.Path(str(resources.files("vivified.plugins.example_echo") / "manifest.yaml"))
COMMAND = (sys.executable, "-m", "vivified.plugins.example_echo")
SERVICE = "/vivified.communication.v1.CommunicationPluginService"


def _message(message_id: str) -> pb.CanonicalMessage:
    return pb.CanonicalMessage(message_id=message_id, to_address="ada@example.com", subject="hi", content="hello")


async def test_echo_delivers_and_reports_through_the_core(tmp_path: pathlib.Path) -> None:
    async with LocalCore(MANIFEST, None, tmp_path, command=COMMAND) as core:
        sent = await core.call(pb.SendMessageRequest(message=_message("m-1")))
        assert isinstance(sent, pb.SendMessageResponse) and sent.status == pb.DELIVERY_STATUS_DELIVERED
        status = await core.call(pb.GetMessageStatusRequest(message_id="m-1"))
        assert isinstance(status, pb.GetMessageStatusResponse)
        assert status.status == pb.DELIVERY_STATUS_DELIVERED and status.update_time.seconds > 0
        again = await core.call(pb.SendMessageRequest(message=_message("m-1")))
        assert isinstance(again, pb.SendMessageResponse) and again.status == pb.DELIVERY_STATUS_DELIVERED

        with pytest.raises(NotFoundError) as unknown:
            await core.call(pb.GetMessageStatusRequest(message_id="never-sent"))
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND and unknown.value.reason == "MESSAGE_NOT_FOUND"
        with pytest.raises(InvalidArgumentError) as incomplete:
            await core.call(pb.SendMessageRequest(message=pb.CanonicalMessage(message_id="m-2")))
        assert incomplete.value.reason == "INVALID_REQUEST" and "to_address" in incomplete.value.message

        # Each call through the operator lane is one audit record of the tester, the refusals included.
        rows = [
            r for r in audit_rows(core_view(core), actor=f"plugin:{core.tester.id}") if r.action.startswith(SERVICE)
        ]
        assert [(r.action.rsplit("/", 1)[1], r.outcome) for r in rows] == [
            ("SendMessage", "OK"),
            ("GetMessageStatus", "OK"),
            ("SendMessage", "OK"),
            ("GetMessageStatus", "NOT_FOUND"),
            ("SendMessage", "INVALID_ARGUMENT"),
        ]
        assert core.plugin.running and "delivered message 'm-1'" in core.plugin.log()
