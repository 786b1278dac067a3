"""`vivified up --plugin <project>` as the tests of generated plugin projects drive it."""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
from collections.abc import AsyncIterator

from support.clients import admitted_plugin, audit_rows, plugin_channel
from support.lane import plugin_state
from support.processes import CoreProcess, clean_env, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc as pb_grpc

STATUS = "vivified.communication.v1.CommunicationPluginService/GetMessageStatus"


@contextlib.asynccontextmanager
async def up_serving(project: pathlib.Path, tmp_path: pathlib.Path, plugin_id: str) -> AsyncIterator[CoreProcess]:
    """Run `vivified up --plugin project` until the plugin is approved, active and healthy."""
    data, log_path = tmp_path / "data", tmp_path / "up.log"
    listen = ("--listen", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    argv = [sys.executable, "-m", "vivified.core.cli", "up", "--data-dir", str(data), *listen]
    up = spawn([*argv, "--heartbeat-interval", "1", "--plugin", str(project)], clean_env(), log_path)
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
            state = await plugin_state(core, plugin_id)
            return bool(
                state
                and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
                and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY
            )

        await until(healthy, 90, f"{plugin_id} to become healthy:\n{log_path.read_text(errors='replace')}")
        approvals = audit_rows(
            core, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin", resource=f"plugin/{plugin_id}"
        )
        assert [(r.actor, r.outcome) for r in approvals] == [("operator:admin", "OK")]
        yield core
    finally:
        code = stop_process(up)
    assert code == 0, log_path.read_text(errors="replace")


async def brokered_status_call(core: CoreProcess, caller_id: str, plugin_id: str, message_id: str) -> None:
    """A plugin allowed to call GetMessageStatus reaches the generated handler through the core."""
    caller = await admitted_plugin(core, caller_id, calls=[{"plugin_id": plugin_id, "method": STATUS}])
    async with plugin_channel(core, caller) as channel:
        reply = await pb_grpc.CommunicationPluginServiceStub(channel).GetMessageStatus(
            pb.GetMessageStatusRequest(message_id=message_id), metadata=(("x-vivified-target", plugin_id),), timeout=15
        )
    assert reply.message_id == message_id  # the generated handler echoes it
    calls = audit_rows(core, action=f"/{STATUS}", actor=f"plugin:{caller_id}")
    assert [(r.decision, r.outcome) for r in calls] == [("allow", "OK")]
