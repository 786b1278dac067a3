"""`vivified up` runs the Node.js plugin under plugins/ beside the Python ones:
the supervisor finds plugins/webhook_notifier (package.json + manifest), starts
it with `node` inside its sandbox (prlimit -> bwrap -> node, in a network
namespace of its own, serving on its Unix socket), and it registers, passes
Init and heartbeats on a real core; a clean stop of `up` stops it (SIGTERM)
and the audit chain verifies."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from support.clients import audit_rows, operator_channel
from support.processes import CoreProcess, clean_env, spawn, stop_process
from support.sandboxes import ancestry, descendants, limits, net_namespace
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.cli._sandbox import SandboxLimits

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]

PLUGIN = "webhook-notifier"
REPO = pathlib.Path(__file__).resolve().parents[1]


async def _plugin(core: CoreProcess) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in listed.plugins if p.plugin_id == PLUGIN), None)


async def test_up_starts_the_node_plugin_with_node_and_it_registers(tmp_path: pathlib.Path) -> None:
    assert (REPO / "sdk" / "nodejs" / "dist" / "src" / "index.js").is_file(), "run tools/setup.sh (builds sdk/nodejs)"
    data = tmp_path / "data"
    log_path = tmp_path / "up.log"
    up = spawn(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "up",
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "1",
        ],
        clean_env(),
        log_path,
    )
    try:
        run_file = data / "run" / "core.json"
        await until(run_file.exists, 30, "the core to start")
        info = json.loads(run_file.read_text())
        core = CoreProcess(
            data_dir=data,
            process=up,
            listen_address=info["listen_address"],
            bootstrap_address=info["bootstrap_address"],
            metrics_address=info["metrics_address"],
            log_path=log_path,
        )

        async def healthy() -> admin_pb.Plugin | None:
            plugin = await _plugin(core)
            ok = (
                plugin
                and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE
                and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
            )
            return plugin if ok else None

        plugin = await until(healthy, 90, f"{PLUGIN} to register and pass Init:\n{log_path.read_text()}")
        assert "webhook_notifier" in next(line for line in log_path.read_text().splitlines() if "plugins:" in line)
        registered = [
            r
            for r in audit_rows(core, action="/vivified.registry.v1.PluginRegistryService/Register")
            if r.resource == f"plugin/{PLUGIN}"
        ]
        assert [r.outcome for r in registered] == ["OK"]
        approvals = audit_rows(
            core, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin", resource=f"plugin/{PLUGIN}"
        )
        assert [r.actor for r in approvals] == ["operator:admin"]
        # node runs the plugin's main.js inside bubblewrap: the supervisor's child was prlimit, which
        # exec'd bwrap (so that process is bwrap, under the sandbox's rlimits); bwrap's child in
        # the new PID namespace runs node.
        below = descendants(up.pid)
        nodes = [p for p in below if p.program == "node" and p.argv[-1].endswith("webhook_notifier/main.js")]
        assert len(nodes) == 1, [p.argv for p in below]
        node = nodes[0]
        chain = ancestry(node.pid, up.pid)
        assert [p.program for p in chain] == ["bwrap", "bwrap"], [p.argv for p in chain]
        assert "--unshare-all" in chain[-1].argv and "--die-with-parent" in chain[-1].argv, chain[-1].argv
        sandbox = SandboxLimits()
        for pid in (node.pid, chain[-1].pid):
            table = limits(pid)
            assert table["Max data size"] == (str(sandbox.memory_bytes),) * 2, table
            assert table["Max open files"] == (str(sandbox.open_files),) * 2, table
            assert table["Max processes"] == (str(sandbox.processes),) * 2, table
        assert net_namespace(node.pid) != net_namespace(), "node shares the host's network namespace"
        # It serves on its own socket, which the core dialled to make it healthy.
        assert plugin.endpoint.startswith("unix:") and plugin.endpoint.endswith(f"/{PLUGIN}/plugin.sock"), (
            plugin.endpoint
        )
        assert "WITHOUT a sandbox" not in log_path.read_text()
        beat = plugin.last_heartbeat_time.ToNanoseconds()

        async def beat_after() -> bool:
            current = await _plugin(core)
            return current is not None and current.last_heartbeat_time.ToNanoseconds() > beat

        await until(beat_after, 10, "a heartbeat of the Node plugin")
    finally:
        code = stop_process(up)
    assert code == 0, log_path.read_text()
    # SIGTERM: the Node plugin deregistered (which revokes) on its way out.
    deregistered = [
        r
        for r in audit_rows(core, actor=f"plugin:{PLUGIN}")
        if r.action == "/vivified.registry.v1.PluginRegistryService/Deregister"
    ]
    assert [r.outcome for r in deregistered] == ["OK"], log_path.read_text()
    verified = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "audit", "--data-dir", str(data), "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
