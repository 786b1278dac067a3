"""`vivified up` end to end: the core and the bundled example plugin as real
processes — approve → register → certificate → Init → heartbeats → disable →
enable → revoke — with the audit log checked, then a clean stop and a valid
audit chain."""

from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
import sys
import time

import pytest

from support.clients import audit_rows, operator_channel
from support.processes import CoreProcess, clean_env, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]

PLUGIN = "example-echo"
HEARTBEAT = "/vivified.registry.v1.PluginRegistryService/Heartbeat"


async def _plugin(core: CoreProcess) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in listed.plugins if p.plugin_id == PLUGIN), None)


async def test_up_runs_core_and_plugin_through_their_lifecycle(tmp_path: pathlib.Path) -> None:
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

        async def healthy() -> bool:
            plugin = await _plugin(core)
            return bool(
                plugin
                and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE
                and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
            )

        await until(healthy, 60, f"{PLUGIN} to register and pass Init + health check:\n{log_path.read_text()}")
        approvals = audit_rows(
            core, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin", resource=f"plugin/{PLUGIN}"
        )
        assert approvals and approvals[0].actor == "operator:admin"
        registered = audit_rows(core, action="/vivified.registry.v1.PluginRegistryService/Register")
        # (the email gateway, also bundled, registers beside it: tests/test_up_email_e2e.py)
        assert [(r.resource, r.outcome) for r in registered if r.resource == f"plugin/{PLUGIN}"] == [
            (f"plugin/{PLUGIN}", "OK")
        ]

        async def beat_after(nanos: int) -> bool:
            plugin = await _plugin(core)
            return plugin is not None and plugin.last_heartbeat_time.ToNanoseconds() > nanos

        # Accepted heartbeats move the listed time; they are counted, not audited one by one.
        healthy_at = time.time_ns()
        await until(lambda: beat_after(healthy_at), 10, "a heartbeat")
        assert audit_rows(core, actor=f"plugin:{PLUGIN}", action=HEARTBEAT) == []

        # The printed grpcurl command works as printed.
        hint = next(line for line in log_path.read_text().splitlines() if line.strip().startswith("grpcurl "))
        listed = subprocess.run(shlex.split(hint), capture_output=True, text=True, timeout=30)
        assert "vivified.admin.v1.PluginAdminService" in listed.stdout, listed.stderr

        async with operator_channel(core) as channel:
            admin = admin_grpc.PluginAdminServiceStub(channel)
            await admin.DisablePlugin(admin_pb.DisablePluginRequest(plugin_id=PLUGIN, reason="e2e"), timeout=5)
            denied = await until(
                lambda: [r for r in audit_rows(core, actor=f"plugin:{PLUGIN}") if r.decision == "deny"],
                10,
                "a heartbeat refused at the status gate",
            )
            first = denied[0]  # type: ignore[index]
            assert (first.reason, first.rule_id, first.outcome) == (
                "PLUGIN_DISABLED",
                "status-gate",
                "PERMISSION_DENIED",
            )

            enabled_at = time.time_ns()
            await admin.EnablePlugin(admin_pb.EnablePluginRequest(plugin_id=PLUGIN), timeout=5)
            await until(lambda: beat_after(enabled_at), 10, "heartbeats after enabling")

            await admin.RevokePlugin(admin_pb.RevokePluginRequest(plugin_id=PLUGIN, reason="e2e"), timeout=5)
        # The core asked the plugin to shut down; it exits cleanly and is not restarted.
        await until(lambda: "stopped cleanly; not restarting" in log_path.read_text(), 20, "the plugin to stop")
        plugin = await _plugin(core)
        assert plugin is not None and plugin.status == admin_pb.PLUGIN_STATUS_REVOKED
    finally:
        code = stop_process(up)
    assert code == 0, log_path.read_text()
    verified = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "audit", "--data-dir", str(data), "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
