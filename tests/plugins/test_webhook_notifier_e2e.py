"""The Node.js webhook notifier through a real core: a SecurityAlert another
plugin publishes, and a message sent to it on the operator lane, reach a
webhook on loopback through the core's egress proxy.

The core runs in its own mount namespace whose /etc/hosts maps the
manifest's allowed domain `hooks.example.com` to 127.0.0.1 (DNS injected for
that one process; nothing outside the test changes), with the egress allow
range 127.0.0.1/32, as the egress tests admit loopback upstreams."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conformance.conftest import start_plugin
from conformance.plugins import ROOT, PluginUnderTest
from support.clients import admitted_plugin, approve, audit_rows, operator_channel, plugin_channel
from support.processes import CoreProcess, clean_env, stop_process
from support.waiting import until
from vivified.communication.v1 import communication_pb2 as comm_pb
from vivified.communication.v1 import communication_pb2_grpc as comm_grpc
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.manifest import load_manifest_file
from vivified.events.v1 import canonical_pb2, events_pb2, events_pb2_grpc
from vivified.sdk import envelope

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
PLUGIN = "webhook-notifier"

if shutil.which("unshare") is None or shutil.which("node") is None:
    pytest.skip("needs unshare (util-linux) and node", allow_module_level=True)


class _Webhook(BaseHTTPRequestHandler):
    posts: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[int, list[dict[str, object]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _Webhook.posts
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hooks_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    base = tmp_path_factory.mktemp("notifier")
    data_dir = base / "data"
    data_dir.mkdir()
    (base / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 hooks.example.com\n")
    (base / "egress.json").write_text(json.dumps({"allow_ranges": ["127.0.0.1/32"]}))
    core_args = [
        sys.executable,
        "-m",
        "vivified.core.cli",
        "core",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--heartbeat-interval",
        "1",
        "--egress-config",
        str(base / "egress.json"),
    ]
    script = f'mount --bind {base / "hosts"} /etc/hosts && exec "$@"'
    log_path = base / "core.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script, "sh", *core_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    core = CoreProcess(data_dir=data_dir, process=process, log_path=log_path)
    run_file = data_dir / "run" / "core.json"
    deadline = time.monotonic() + 30
    while not run_file.exists():
        assert process.poll() is None and time.monotonic() < deadline, core.log()
        time.sleep(0.05)
    info = json.loads(run_file.read_text())
    core.listen_address, core.bootstrap_address = info["listen_address"], info["bootstrap_address"]
    core.trust_domain = info["trust_domain"]
    yield core
    stop_process(process)


async def test_alerts_and_messages_reach_the_webhook_through_egress(
    hooks_core: CoreProcess, webhook: tuple[int, list[dict[str, object]]], tmp_path: pathlib.Path
) -> None:
    core, (port, posts) = hooks_core, webhook
    manifest = yaml.safe_load((ROOT / "plugins/webhook_notifier/manifest.yaml").read_text())
    manifest["security"]["allowed_ports"] = [port]
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    spec = PluginUnderTest("webhook_notifier", ("node", str(ROOT / "plugins/webhook_notifier/main.js")), path)
    # The webhook is configured before the plugin starts; it reads it at Init.
    await approve(core, load_manifest_file(path), replace=True)
    async with operator_channel(core) as channel:
        await config_pb2_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
            config_pb2.SetPluginConfigValueRequest(
                plugin_id=PLUGIN, key="webhook_url", value=f"http://hooks.example.com:{port}/vivified", reason="e2e"
            ),
            timeout=10,
        )
    # without the conformance hook, which would provoke refused calls and fetches of its own
    running = await start_plugin(core, spec, tmp_path, control=False)
    try:
        publisher = await admitted_plugin(core, "alert-source", publishes=["vivified.events.v1.SecurityAlert"])
        alert = canonical_pb2.SecurityAlert(
            alert_id="a-1", kind="test", severity=canonical_pb2.SEVERITY_CRITICAL, summary="e2e alert"
        )
        caller = await admitted_plugin(
            core,
            "message-sender",
            calls=[{"plugin_id": PLUGIN, "method": "vivified.communication.v1.CommunicationPluginService/SendMessage"}],
        )
        async with plugin_channel(core, caller) as channel:
            reply = await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(
                comm_pb.SendMessageRequest(
                    message=comm_pb.CanonicalMessage(
                        message_id="m-1", to_address="ops@example.com", content="disk full"
                    )
                ),
                metadata=(("x-vivified-target", PLUGIN),),
                timeout=15,
            )
        assert reply.status == comm_pb.DELIVERY_STATUS_DELIVERED

        async def alert_posted() -> bool:
            async with plugin_channel(core, publisher) as channel:
                await events_pb2_grpc.EventBusServiceStub(channel).Publish(
                    events_pb2.PublishRequest(event=envelope(alert, event_id="alert-1")), timeout=10
                )
            return any(p.get("kind") == "security_alert" for p in posts)

        await until(alert_posted, 20, f"the alert at the webhook:\n{running.log()}")
        kinds = {p["kind"] for p in posts}
        assert kinds == {"message", "security_alert"}, posts
        posted = next(p for p in posts if p["kind"] == "security_alert")
        assert (
            posted["alert_id"] == "a-1"
            and posted["source"] == "alert-source"
            and posted["severity"] == "SEVERITY_CRITICAL"
        )
        fetches = audit_rows(core, actor=f"plugin:{PLUGIN}", action="/vivified.egress.v1.EgressProxyService/Fetch")
        assert len(fetches) >= 2 and all((r.decision, r.outcome) == ("allow", "OK") for r in fetches), [
            (r.decision, r.outcome, r.reason, r.detail) for r in fetches
        ]
    finally:
        stop_process(running.process)  # type: ignore[arg-type]
