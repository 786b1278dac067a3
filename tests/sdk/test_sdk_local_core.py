"""`vivified.sdk.testing.LocalCore` end to end: a real `vivified core` process,
the plugin under test in this process, and the tester calling it through the
core's operator lane (real mTLS, the real chain, audited)."""

from __future__ import annotations

import pathlib

import pytest

from support.clients import audit_rows
from support.processes import CoreProcess
from vivified.communication.v1 import communication_pb2 as pb
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PermissionDeniedError, PluginRuntime, load_manifest
from vivified.sdk.testing import LocalCore, mirror_manifest

pytestmark = [pytest.mark.e2e]

ROOT = pathlib.Path(__file__).resolve().parents[2]
ECHO = ROOT / "plugins/example_echo/manifest.yaml"
SEND = "/vivified.communication.v1.CommunicationPluginService/SendMessage"


def test_the_tester_mirrors_the_plugin_manifest() -> None:
    tester = mirror_manifest(load_manifest(ECHO))
    assert tester.id == "example-echo-tester"
    assert [(c.plugin_id, c.method) for c in tester.calls] == [
        ("example-echo", "vivified.communication.v1.CommunicationPluginService/SendMessage"),
        ("example-echo", "vivified.communication.v1.CommunicationPluginService/GetMessageStatus"),
    ]
    assert list(tester.provides) == []


@pytest.mark.asyncio
async def test_local_core_runs_the_plugin_behind_a_real_core(tmp_path: pathlib.Path) -> None:
    seen: list[PluginRuntime] = []

    def factory(runtime: PluginRuntime) -> list[object]:
        seen.append(runtime)
        return [EchoCommunicationPlugin()]

    async with LocalCore(ECHO, factory, tmp_path) as core:
        assert seen == [core.runtime] and core.runtime.initialised
        reply = await core.call(pb.SendMessageRequest(message=pb.CanonicalMessage(
            message_id="m-1", to_address="a@example.com", content="hi")))
        assert isinstance(reply, pb.SendMessageResponse) and reply.status == pb.DELIVERY_STATUS_DELIVERED
        process = CoreProcess(data_dir=core.data_dir, process=None)  # type: ignore[arg-type]
        rows = audit_rows(process, action=SEND)
        assert [(r.actor, r.decision, r.outcome) for r in rows] == [("plugin:example-echo-tester", "allow", "OK")]
        # The tester may only call what the plugin provides: the plugin calling itself is refused.
        with pytest.raises(PermissionDeniedError) as denied:
            await core.runtime.call("example-echo", pb.GetMessageStatusRequest(message_id="m-1"), timeout=10)
        assert denied.value.reason == "POLICY_DENIED"
        status = "/vivified.communication.v1.CommunicationPluginService/GetMessageStatus"
        refused = audit_rows(process, action=status, actor="plugin:example-echo")
        assert [(r.decision, r.reason, r.outcome) for r in refused] == [("deny", "POLICY_DENIED", "PERMISSION_DENIED")]
    assert core.runtime.closed
