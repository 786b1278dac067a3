"""`vivified.sdk.testing.LocalCore` end to end: a real `vivified core` process,
the plugin under test in this process, and the tester calling it through the
core's operator lane (real mTLS, the real chain, audited)."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from support.clients import audit_rows
from support.processes import CoreProcess
from vivified.communication.v1 import communication_pb2 as pb
from vivified.egress.v1 import egress_pb2
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PermissionDeniedError, PluginRuntime, load_manifest
from vivified.sdk.testing import LocalCore, LocalCoreOptions, mirror_manifest

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
        reply = await core.call(
            pb.SendMessageRequest(
                message=pb.CanonicalMessage(message_id="m-1", to_address="a@example.com", content="hi")
            )
        )
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


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


class _AwareEcho(EchoCommunicationPlugin):
    """Echo plus the runtime hook: on_init(runtime) runs at the core's Init."""

    def __init__(self) -> None:
        super().__init__()
        self.inits: list[PluginRuntime] = []

    async def on_init(self, runtime: PluginRuntime) -> None:
        self.inits.append(runtime)


@pytest.mark.asyncio
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
async def test_servicers_get_the_runtime_at_init_and_fetch_through_egress(tmp_path: pathlib.Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    # The core resolves hooks.example.com to loopback (its own /etc/hosts in a mount namespace)
    # and its egress config allows loopback: the options run it under `unshare`.
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 hooks.example.com\n")
    (tmp_path / "egress.json").write_text(json.dumps({"allow_ranges": ["127.0.0.1/32"]}))
    script = f'mount --bind {tmp_path / "hosts"} /etc/hosts && exec "$@"'
    options = LocalCoreOptions(
        command=("unshare", "--mount", "sh", "-c", script, "sh", sys.executable, "-m", "vivified.core.cli", "core"),
        extra_flags=("--heartbeat-interval", "1", "--egress-config", str(tmp_path / "egress.json")),
    )
    manifest = yaml.safe_load(ECHO.read_text())
    manifest["traits"].append("external_service")
    manifest["security"] = {"allowed_domains": ["hooks.example.com"], "allowed_ports": [port]}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    servicer = _AwareEcho()
    try:
        async with LocalCore(path, [servicer], tmp_path / "env", options=options) as core:
            assert servicer.inits == [core.runtime]
            reply = await core.runtime.fetch(
                egress_pb2.FetchRequest(method="GET", url=f"http://hooks.example.com:{port}/status"), timeout=15
            )
            assert (reply.status_code, reply.body) == (200, b"hello")
            process = CoreProcess(data_dir=core.data_dir, process=None)  # type: ignore[arg-type]
            fetches = audit_rows(process, action="/vivified.egress.v1.EgressProxyService/Fetch")
            assert [(r.actor, r.outcome) for r in fetches] == [("plugin:example-echo", "OK")]
            with pytest.raises(PermissionDeniedError) as denied:
                await core.runtime.fetch(
                    egress_pb2.FetchRequest(method="GET", url=f"http://elsewhere.example.com:{port}/"), timeout=15
                )
            assert denied.value.reason == "EGRESS_DENIED"
            refused = audit_rows(process, action="/vivified.egress.v1.EgressProxyService/Fetch")[1:]
            assert [(r.reason, r.outcome) for r in refused] == [("EGRESS_DENIED", "PERMISSION_DENIED")]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.asyncio
async def test_m3_a_killed_plugin_process_resumes_behind_local_core_without_a_new_approval(
    tmp_path: pathlib.Path,
) -> None:
    command = (sys.executable, "-m", "vivified.plugins.example_echo")
    async with LocalCore(ECHO, None, tmp_path, command=command) as core:
        plugin = core.plugin
        assert plugin is not None
        process = CoreProcess(data_dir=core.data_dir, process=None)  # type: ignore[arg-type]
        approvals = len(audit_rows(process, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin"))
        await plugin.kill()
        await plugin.resume()
        resumed = audit_rows(process, action="/vivified.registry.v1.PluginRegistryService/Resume")
        assert [(r.actor, r.decision, r.outcome) for r in resumed] == [("plugin:example-echo", "allow", "OK")]
        assert len(audit_rows(process, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin")) == approvals
        reply = await core.call(
            pb.SendMessageRequest(
                message=pb.CanonicalMessage(message_id="m-2", to_address="a@example.com", content="hi")
            )
        )
        assert isinstance(reply, pb.SendMessageResponse) and reply.status == pb.DELIVERY_STATUS_DELIVERED
        # A restart (a clean stop, then a start) approves again and registers afresh; no refused Resume first.
        await plugin.restart()
        assert len(audit_rows(process, action="/vivified.registry.v1.PluginRegistryService/Resume")) == 1
