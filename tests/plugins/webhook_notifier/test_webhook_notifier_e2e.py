"""The Node.js webhook notifier through a real core: a SecurityAlert another
plugin publishes, and a message sent to it on the operator lane, reach a
webhook on loopback through the core's egress proxy.

The core runs in its own mount namespace whose /etc/hosts maps the
manifest's allowed domain `hooks.example.com` to 127.0.0.1 (DNS injected for
that one process; nothing outside the test changes), with the egress allow
range 127.0.0.1/32, as the egress tests admit loopback upstreams. It also serves
its ports as Unix sockets, so the notifier runs a second time the way
`vivified up` runs it: supervised inside bubblewrap, serving on its own socket
and reaching the core only over the core's."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conformance.conftest import start_plugin
from conformance.plugins import ROOT, PluginUnderTest
from support.clients import admitted_plugin, approve, audit_rows, operator_channel, plugin_channel
from support.processes import CoreProcess, clean_env, stop_process
from support.sandboxes import ancestry, descendants, net_namespace
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.communication.v1 import communication_pb2 as comm_pb
from vivified.communication.v1 import communication_pb2_grpc as comm_grpc
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.app import RunningCore
from vivified.core.cli._sandbox import Sandbox, locate_bwrap
from vivified.core.cli._supervisor import Supervisor, Unsandboxed
from vivified.core.cli._up import node_plugin
from vivified.core.config import CoreConfig
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
    # A short directory: a socket path must fit in 107 bytes.
    sockets = pathlib.Path(tempfile.mkdtemp(prefix="vv-"))
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
        "--plugin-socket-dir",
        str(sockets),
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
    try:
        yield core
    finally:
        stop_process(process)
        shutil.rmtree(sockets, ignore_errors=True)


def _notifier_manifest(port: int, directory: pathlib.Path) -> pathlib.Path:
    """The notifier's manifest, allowing the webhook's port."""
    manifest = yaml.safe_load((ROOT / "plugins/webhook_notifier/manifest.yaml").read_text())
    manifest["security"]["allowed_ports"] = [port]
    path = directory / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


async def _configure_webhook(core: CoreProcess, port: int) -> None:
    async with operator_channel(core) as channel:
        await config_pb2_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
            config_pb2.SetPluginConfigValueRequest(
                plugin_id=PLUGIN, key="webhook_url", value=f"http://hooks.example.com:{port}/vivified", reason="e2e"
            ),
            timeout=10,
        )


async def _message_and_alert_reach_the_webhook(
    core: CoreProcess, posts: list[dict[str, object]], suffix: str, log: Callable[[], str]
) -> None:
    """Another plugin sends the notifier a message on the operator lane (the core dials it) and
    publishes a SecurityAlert it subscribes to; both are posted to the webhook through egress."""
    posts.clear()
    publisher = await admitted_plugin(core, f"alert-source{suffix}", publishes=["vivified.events.v1.SecurityAlert"])
    alert = canonical_pb2.SecurityAlert(
        alert_id=f"a{suffix}", kind="test", severity=canonical_pb2.SEVERITY_CRITICAL, summary="e2e alert"
    )
    caller = await admitted_plugin(
        core,
        f"message-sender{suffix}",
        calls=[{"plugin_id": PLUGIN, "method": "vivified.communication.v1.CommunicationPluginService/SendMessage"}],
    )
    async with plugin_channel(core, caller) as channel:
        reply = await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(
            comm_pb.SendMessageRequest(
                message=comm_pb.CanonicalMessage(
                    message_id=f"m{suffix}", to_address="ops@example.com", content="disk full"
                )
            ),
            metadata=(("x-vivified-target", PLUGIN),),
            timeout=15,
        )
    assert reply.status == comm_pb.DELIVERY_STATUS_DELIVERED

    async def alert_posted() -> bool:
        async with plugin_channel(core, publisher) as channel:
            await events_pb2_grpc.EventBusServiceStub(channel).Publish(
                events_pb2.PublishRequest(event=envelope(alert, event_id=f"alert{suffix}")), timeout=10
            )
        return any(p.get("kind") == "security_alert" for p in posts)

    await until(alert_posted, 20, f"the alert at the webhook:\n{log()}")
    kinds = {p["kind"] for p in posts}
    assert kinds == {"message", "security_alert"}, posts
    posted = next(p for p in posts if p["kind"] == "security_alert")
    assert (
        posted["alert_id"] == f"a{suffix}"
        and posted["source"] == f"alert-source{suffix}"
        and posted["severity"] == "SEVERITY_CRITICAL"
    )
    # The call is audited once, as the caller's, naming the notifier as its target.
    sent = audit_rows(
        core,
        actor=f"plugin:message-sender{suffix}",
        action=f"/{comm_pb.DESCRIPTOR.package}.CommunicationPluginService/SendMessage",
    )
    assert [(r.decision, r.outcome) for r in sent] == [("allow", "OK")], [
        (r.decision, r.outcome, r.reason) for r in sent
    ]
    assert f'"target":"{PLUGIN}"' in sent[0].detail


async def test_alerts_and_messages_reach_the_webhook_through_egress(
    hooks_core: CoreProcess, webhook: tuple[int, list[dict[str, object]]], tmp_path: pathlib.Path
) -> None:
    core, (port, posts) = hooks_core, webhook
    path = _notifier_manifest(port, tmp_path)
    spec = PluginUnderTest("webhook_notifier", ("node", str(ROOT / "plugins/webhook_notifier/main.js")), path)
    # The webhook is configured before the plugin starts; it reads it at Init.
    await approve(core, load_manifest_file(path), replace=True)
    await _configure_webhook(core, port)
    # without the conformance hook, which would provoke refused calls and fetches of its own
    running = await start_plugin(core, spec, tmp_path, control=False)
    try:
        await _message_and_alert_reach_the_webhook(core, posts, "-1", running.log)
        fetches = audit_rows(core, actor=f"plugin:{PLUGIN}", action="/vivified.egress.v1.EgressProxyService/Fetch")
        assert len(fetches) >= 2 and all((r.decision, r.outcome) == ("allow", "OK") for r in fetches), [
            (r.decision, r.outcome, r.reason, r.detail) for r in fetches
        ]
    finally:
        stop_process(running.process)  # type: ignore[arg-type]


async def test_sandboxed_notifier_serves_calls_and_events_over_its_socket(
    hooks_core: CoreProcess, webhook: tuple[int, list[dict[str, object]]], tmp_path: pathlib.Path
) -> None:
    """The notifier as `vivified up` runs it: the supervisor starts prlimit -> bwrap -> node; the
    core calls it on its Unix socket, its subscription and egress go over the core's socket."""
    core, (port, posts) = hooks_core, webhook
    info = json.loads((core.data_dir / "run" / "core.json").read_text())
    running = RunningCore(**info)
    assert running.plugin_socket_dir
    bwrap, why_not = locate_bwrap()
    assert bwrap is not None and why_not is None, why_not  # tools/setup.sh installs bubblewrap
    lines: list[str] = []
    supervisor = Supervisor(
        CoreConfig(data_dir=core.data_dir),
        running,
        clean_env(),
        # The supervisor's own approval is the one the plugin starts with; its config is set right after.
        after_approval=lambda plugin_id: _configure_webhook(core, port),
        output=lambda plugin_id, stream, line: lines.append(f"{plugin_id} | {line}"),
        sandbox=Sandbox(bwrap=bwrap, data_dir=core.data_dir, socket_dir=pathlib.Path(running.plugin_socket_dir)),
        unsandboxed=Unsandboxed(reason="", allowed=False),
    )
    spec = node_plugin(ROOT / "plugins" / "webhook_notifier", _notifier_manifest(port, tmp_path))
    assert spec is not None
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.supervise(spec, stop))
    try:

        async def healthy() -> admin_pb.Plugin | None:
            async with operator_channel(core) as channel:
                listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                    admin_pb.ListPluginsRequest(), timeout=10
                )
            plugin = next((p for p in listed.plugins if p.plugin_id == PLUGIN), None)
            ok = plugin is not None and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY and not task.done()
            return plugin if ok and plugin.endpoint.startswith("unix:") else None

        plugin = await until(healthy, 60, "the sandboxed notifier healthy:\n" + "\n".join(lines))
        assert plugin.endpoint == f"unix:{pathlib.Path(running.plugin_socket_dir).resolve()}/{PLUGIN}/plugin.sock"
        nodes = [p for p in descendants(os.getpid()) if p.program == "node" and p.argv[-1].endswith("main.js")]
        assert len(nodes) == 1, nodes
        assert [p.program for p in ancestry(nodes[0].pid, os.getpid())] == ["bwrap", "bwrap"]
        assert net_namespace(nodes[0].pid) != net_namespace()
        before = len(audit_rows(core, actor=f"plugin:{PLUGIN}", action="/vivified.egress.v1.EgressProxyService/Fetch"))
        await _message_and_alert_reach_the_webhook(core, posts, "-2", lambda: "\n".join(lines))
        fetches = audit_rows(core, actor=f"plugin:{PLUGIN}", action="/vivified.egress.v1.EgressProxyService/Fetch")
        assert len(fetches) - before >= 2 and all(
            (r.decision, r.outcome) == ("allow", "OK") for r in fetches[before:]
        ), [(r.decision, r.outcome, r.reason) for r in fetches[before:]]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # Stopped gracefully inside its sandbox: it deregistered on its way out.
    deregistered = [
        r for r in audit_rows(core, actor=f"plugin:{PLUGIN}") if r.action.endswith("PluginRegistryService/Deregister")
    ]
    assert [r.outcome for r in deregistered][-1:] == ["OK"], "\n".join(lines)
