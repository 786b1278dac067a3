"""`vivified up --plugin DIR` runs a plugin project from outside the package
(as `vivified create-plugin` writes it) next to the bundled plugins: approved
by `up` as the operator (one audit record), registered, healthy, and answering
through the core's operator lane with its generated code."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from support.clients import admitted_plugin, audit_rows, plugin_channel
from support.lane import plugin_state
from support.processes import CoreProcess, clean_env, run_vivified, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PLUGIN = "outside-plugin"
STATUS = "vivified.communication.v1.CommunicationPluginService/GetMessageStatus"


@pytest.mark.asyncio
async def test_up_runs_a_plugin_project_given_with_plugin(tmp_path: pathlib.Path) -> None:
    created = run_vivified("create-plugin", PLUGIN, "--contract", "communication", "--dir", str(tmp_path / "src"))
    assert created.returncode == 0, created.stderr
    project = tmp_path / "src" / PLUGIN
    data, log_path = tmp_path / "data", tmp_path / "up.log"
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
            "--plugin",
            str(project),
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
            state = await plugin_state(core, PLUGIN)
            return bool(
                state
                and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
                and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY
            )

        await until(healthy, 90, f"{PLUGIN} to become healthy:\n{log_path.read_text(errors='replace')}")
        approvals = audit_rows(
            core, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin", resource=f"plugin/{PLUGIN}"
        )
        assert [(r.actor, r.outcome) for r in approvals] == [("operator:admin", "OK")]
        assert f"started {PLUGIN.replace('-', '_')}" in log_path.read_text()

        caller = await admitted_plugin(core, "outside-caller", calls=[{"plugin_id": PLUGIN, "method": STATUS}])
        async with plugin_channel(core, caller) as channel:
            reply = await pb_grpc.CommunicationPluginServiceStub(channel).GetMessageStatus(
                pb.GetMessageStatusRequest(message_id="m-9"), metadata=(("x-vivified-target", PLUGIN),), timeout=15
            )
        assert reply.message_id == "m-9"  # the generated handler echoes it
        calls = audit_rows(core, action=f"/{STATUS}", actor="plugin:outside-caller")
        assert [(r.decision, r.outcome) for r in calls] == [("allow", "OK")]
    finally:
        code = stop_process(up)
    assert code == 0, log_path.read_text(errors="replace")


def test_up_refuses_a_plugin_dir_without_a_manifest(tmp_path: pathlib.Path) -> None:
    refused = run_vivified("up", "--data-dir", str(tmp_path / "data"), "--plugin", str(tmp_path), timeout=60)
    assert refused.returncode == 1
    assert "no manifest.yaml there [PLUGIN_MANIFEST_MISSING]" in refused.stderr, refused.stderr
    assert not (tmp_path / "data" / "run" / "core.json").exists()


def test_up_refuses_a_plugin_dir_without_a_module(tmp_path: pathlib.Path) -> None:
    (tmp_path / "manifest.yaml").write_text("id: x\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    refused = run_vivified("up", "--data-dir", str(tmp_path / "data"), "--plugin", str(tmp_path), timeout=60)
    assert refused.returncode == 1 and "[PLUGIN_MODULE_MISSING]" in refused.stderr, refused.stderr
