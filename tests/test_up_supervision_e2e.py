"""The supervisor of `vivified up` (core/cli/_supervisor.py) against a real core
process, with real plugin processes (SDK plugins run as `--plugin DIR`
projects): a crash-looping plugin is stopped, marked unhealthy, audited once
and alerted (S3); one that crashes once is restarted after a backoff; one that
exits cleanly stays stopped; a plugin whose code changed since its approval is
refused at its restart (audited once, alerted); every line a plugin writes
comes out prefixed with its id. A crashed plugin restarts from its stored
certificate without a new approval (M3); one revoked while it was down is
approved again."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio

from support.clients import admitted_plugin, audit_rows, error_info, operator_channel, plugin_channel
from support.events import SECURITY_ALERT, Inbox, event_plugin
from support.lane import write_manifest
from support.processes import CoreProcess
from support.users import expect_error
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.app import RunningCore
from vivified.core.cli._supervisor import SupervisionConfig, Supervisor, artifact_sha256
from vivified.core.cli._up import plugin_project
from vivified.core.config import CoreConfig
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SEVERITY_WARNING, SecurityAlert

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]
REPORT = "/vivified.admin.v1.PluginAdminService/ReportPluginFailure"
APPROVE = "/vivified.admin.v1.PluginAdminService/ApprovePlugin"
REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"
RESUME = "/vivified.registry.v1.PluginRegistryService/Resume"
TESTS = pathlib.Path(__file__).resolve().parent

# The plugin process: a storage plugin that prints its pid, then per SUPERVISED_MODE
# crashes (exit 3) just after the core's Init, crashes only on its first run,
# exits cleanly at once, or keeps running.
PLUGIN_MAIN = textwrap.dedent("""
    import os, sys, threading, time
    from vivified.sdk import PluginSettings, run
    from support.lane import RecordingStore

    mode = os.environ["SUPERVISED_MODE"]
    marker = os.path.join(os.environ["VIVIFIED_PLUGIN_DATA_DIR"], "ran-once")
    first = not os.path.exists(marker)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    open(marker, "w").close()
    print(f"supervised pid={os.getpid()} mode={mode}", flush=True)
    if mode == "clean":
        print("leaving cleanly", file=sys.stderr, flush=True)
        raise SystemExit(0)

    async def on_init(request):
        if mode == "crash" or (mode == "crash-once" and first):
            def die():
                time.sleep(0.2)
                print("boom: crashing on purpose", file=sys.stderr, flush=True)
                os._exit(3)
            threading.Thread(target=die, daemon=True).start()

    run([RecordingStore()], PluginSettings.from_env(os.environ), on_init=on_init)
""")


@dataclass
class Output:
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, plugin_id: str, stream: str, line: str) -> None:
        self.lines.append((plugin_id, stream, line))

    def pids(self, plugin_id: str) -> list[int]:
        return [
            int(line.split("pid=")[1].split()[0])
            for pid_of, _, line in self.lines
            if pid_of == plugin_id and line.startswith("supervised pid=")
        ]


def project(root: pathlib.Path, plugin_id: str) -> pathlib.Path:
    directory = root / plugin_id
    package = directory / "supervised_plugin"
    package.mkdir(parents=True)
    write_manifest(directory, plugin_id).rename(directory / "manifest.yaml")
    (directory / "pyproject.toml").write_text('[tool.vivified]\nmodule = "supervised_plugin"\n')
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PLUGIN_MAIN)
    return directory


@dataclass
class World:
    core: CoreProcess
    alerts: Inbox
    tmp: pathlib.Path

    def supervisor(self, mode: str, output: Output, crashes: int = 3, backoff: float = 0.05) -> Supervisor:
        info = json.loads((self.core.data_dir / "run" / "core.json").read_text())
        running = RunningCore(
            pid=info["pid"],
            listen_address=self.core.listen_address,
            bootstrap_address=self.core.bootstrap_address,
            metrics_address=self.core.metrics_address,
            trust_domain=self.core.trust_domain,
        )
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")},
            "PYTHONPATH": str(TESTS),
            "SUPERVISED_MODE": mode,
        }
        return Supervisor(
            CoreConfig(data_dir=self.core.data_dir),
            running,
            environ,
            supervision=SupervisionConfig(
                backoff_base=backoff,
                backoff_max=max(backoff, 0.2),
                crash_loop_crashes=crashes,
                crash_loop_window=60,
            ),
            output=output,
        )

    def alerts_about(self, plugin_id: str) -> list[SecurityAlert]:
        return [
            p for p, _ in self.alerts.received if isinstance(p, SecurityAlert) and p.subject == f"plugin/{plugin_id}"
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("supervision")
    watcher = await event_plugin(core, tmp, "supervision-alerts", subscribes=[SECURITY_ALERT])
    alerts = Inbox()
    await watcher.subscribe("alerts", {SecurityAlert: alerts}).opened()
    try:
        yield World(core, alerts, tmp)
    finally:
        await watcher.stop("test over")


async def plugin_state(core: CoreProcess, plugin_id: str) -> admin_pb.Plugin:
    """The registry's view of the plugin (an empty Plugin before its approval)."""
    async with operator_channel(core) as channel:
        reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    found = [p for p in reply.plugins if p.plugin_id == plugin_id]
    return found[0] if found else admin_pb.Plugin()


async def test_s3_crash_loop_is_stopped_marked_unhealthy_audited_and_alerted(world: World) -> None:
    plugin_id = "crash-looper"
    spec = plugin_project(project(world.tmp, plugin_id))
    output = Output()
    stop = asyncio.Event()
    # Returns by itself: the third crash within the window ends supervision.
    await asyncio.wait_for(world.supervisor("crash", output).supervise(spec, stop), 90)

    assert len(output.pids(plugin_id)) == 3, output.lines  # started, restarted twice, then given up
    assert sum(1 for p, s, line in output.lines if (p, s) == (plugin_id, "stderr") and line.startswith("boom")) == 3
    [report] = audit_rows(world.core, action=REPORT, resource=f"plugin/{plugin_id}")
    detail = json.loads(report.detail)
    assert (report.actor, report.outcome) == ("operator:admin", "OK")
    assert (detail["failure"], detail["crashes"], detail["window_seconds"], detail["last_exit"]) == (
        "PLUGIN_CRASH_LOOP",
        "3",
        "60",
        "3",
    )
    assert (await plugin_state(world.core, plugin_id)).health == admin_pb.PLUGIN_HEALTH_UNHEALTHY
    await until(lambda: world.alerts_about(plugin_id), 15, "the crash-loop SecurityAlert")
    [alert] = world.alerts_about(plugin_id)
    assert (alert.kind, alert.severity, alert.alert_id) == ("plugin_crash_loop", SEVERITY_WARNING, detail["alert_id"])
    assert "crashed 3 times" in alert.summary
    # Stopped for good: no process of it is left and nothing starts it again.
    await asyncio.sleep(0.5)
    assert len(output.pids(plugin_id)) == 3


async def test_s3_single_crash_restarts_with_backoff_and_clean_exit_stays_stopped(world: World) -> None:
    plugin_id = "crash-once"
    spec = plugin_project(project(world.tmp, plugin_id))
    output = Output()
    stop = asyncio.Event()
    task = asyncio.create_task(world.supervisor("crash-once", output).supervise(spec, stop))
    try:

        async def healthy_again() -> bool:
            state = await plugin_state(world.core, plugin_id)
            return len(output.pids(plugin_id)) == 2 and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY

        await until(healthy_again, 60, f"{plugin_id} to be restarted and healthy: {output.lines}")
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert audit_rows(world.core, action=REPORT, resource=f"plugin/{plugin_id}") == []
    # The restart resumed from the stored certificate (M3): approved once, registered once.
    assert len(audit_rows(world.core, action=APPROVE, resource=f"plugin/{plugin_id}")) == 1
    assert len(audit_rows(world.core, action=REGISTER, resource=f"plugin/{plugin_id}")) == 1
    resumed = audit_rows(world.core, action=RESUME, actor=f"plugin:{plugin_id}")
    assert [(r.decision, r.outcome) for r in resumed] == [("allow", "OK")]

    clean_id = "clean-exit"
    clean = Output()
    await asyncio.wait_for(
        world.supervisor("clean", clean).supervise(plugin_project(project(world.tmp, clean_id)), asyncio.Event()), 30
    )
    assert len(clean.pids(clean_id)) == 1
    assert (clean_id, "stderr", "leaving cleanly") in clean.lines
    assert audit_rows(world.core, action=REPORT, resource=f"plugin/{clean_id}") == []
    assert world.alerts_about(clean_id) == [] and world.alerts_about(plugin_id) == []


async def test_m3_a_plugin_revoked_while_down_is_approved_again_at_its_restart(world: World) -> None:
    plugin_id = "revoked-while-down"
    spec = plugin_project(project(world.tmp, plugin_id))
    output = Output()
    stop = asyncio.Event()
    # A long backoff: the plugin is revoked while the supervisor waits to restart it.
    task = asyncio.create_task(world.supervisor("run", output, backoff=6.0).supervise(spec, stop))
    try:

        async def healthy(runs: int) -> bool:
            state = await plugin_state(world.core, plugin_id)
            return len(output.pids(plugin_id)) == runs and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY

        await until(lambda: healthy(1), 60, f"{plugin_id} to become healthy: {output.lines}")
        os.kill(output.pids(plugin_id)[0], signal.SIGKILL)
        async with operator_channel(world.core) as channel:
            await admin_grpc.PluginAdminServiceStub(channel).RevokePlugin(
                admin_pb.RevokePluginRequest(plugin_id=plugin_id, reason="revoked while down"), timeout=10
            )
        await until(lambda: healthy(2), 60, f"{plugin_id} to be approved again and healthy: {output.lines}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert len(audit_rows(world.core, action=APPROVE, resource=f"plugin/{plugin_id}")) == 2
    assert len(audit_rows(world.core, action=REGISTER, resource=f"plugin/{plugin_id}")) == 2
    assert audit_rows(world.core, action=RESUME, actor=f"plugin:{plugin_id}") == []  # not even tried


async def test_changed_plugin_code_is_refused_at_restart_audited_and_alerted(world: World) -> None:
    plugin_id = "tampered"
    directory = project(world.tmp, plugin_id)
    spec = plugin_project(directory)
    approved = artifact_sha256(directory)
    output = Output()
    stop = asyncio.Event()
    task = asyncio.create_task(world.supervisor("run", output).supervise(spec, stop))
    try:

        async def healthy() -> bool:
            state = await plugin_state(world.core, plugin_id)
            return state.health == admin_pb.PLUGIN_HEALTH_HEALTHY

        await until(healthy, 60, f"{plugin_id} to become healthy: {output.lines}")
        assert (await plugin_state(world.core, plugin_id)).artifact_sha256 == approved
        # The code changes under the running plugin, which then dies: the restart is refused.
        with (directory / "supervised_plugin" / "__main__.py").open("a") as handle:
            handle.write("\nprint('injected', flush=True)\n")
        [pid] = output.pids(plugin_id)
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(task, 30)  # supervision ends: refused, not restarted
    finally:
        stop.set()
        if not task.done():
            task.cancel()
    assert len(output.pids(plugin_id)) == 1 and not any("injected" in line for *_, line in output.lines)
    [report] = audit_rows(world.core, action=REPORT, resource=f"plugin/{plugin_id}")
    detail = json.loads(report.detail)
    assert (detail["failure"], detail["expected_sha256"]) == ("PLUGIN_ARTIFACT_MISMATCH", approved)
    assert detail["actual_sha256"] == artifact_sha256(directory) != approved
    assert (await plugin_state(world.core, plugin_id)).health == admin_pb.PLUGIN_HEALTH_UNHEALTHY
    await until(lambda: world.alerts_about(plugin_id), 15, "the artifact-mismatch SecurityAlert")
    [alert] = world.alerts_about(plugin_id)
    assert (alert.kind, alert.severity, alert.details["actual_sha256"]) == (
        "plugin_artifact_mismatch",
        SEVERITY_CRITICAL,
        detail["actual_sha256"],
    )


async def test_artifact_sha256_follows_code_not_byte_caches(tmp_path: pathlib.Path) -> None:
    directory = project(tmp_path, "hashed")
    before = artifact_sha256(directory)
    (directory / "supervised_plugin" / "__pycache__").mkdir()
    (directory / "supervised_plugin" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    assert artifact_sha256(directory) == before
    (directory / "supervised_plugin" / "extra.py").write_text("")
    assert artifact_sha256(directory) != before
    (directory / "supervised_plugin" / "extra.py").unlink()
    (directory / "supervised_plugin" / "__main__.py").chmod(0o755)
    assert artifact_sha256(directory) != before


async def test_report_plugin_failure_refuses_an_unknown_kind_and_a_plugin_caller(world: World) -> None:
    target = await admitted_plugin(world.core, "report-target")
    async with operator_channel(world.core) as channel:
        err = await expect_error(
            admin_grpc.PluginAdminServiceStub(channel).ReportPluginFailure(
                admin_pb.ReportPluginFailureRequest(plugin_id="report-target", kind="PLUGIN_BORED"), timeout=10
            )
        )
    assert (err.code(), error_info(err).reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    [row] = audit_rows(world.core, action=REPORT, resource="plugin/report-target")
    assert (row.actor, row.outcome) == ("operator:admin", "INVALID_ARGUMENT")

    # A plugin cannot report (or fake) a failure of another plugin: admin calls are operators' only.
    async with plugin_channel(world.core, target) as channel:
        err = await expect_error(
            admin_grpc.PluginAdminServiceStub(channel).ReportPluginFailure(
                admin_pb.ReportPluginFailureRequest(plugin_id="crash-looper", kind="PLUGIN_CRASH_LOOP"), timeout=10
            )
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "POLICY_DENIED"
    [denied] = audit_rows(world.core, action=REPORT, actor="plugin:report-target")
    assert (denied.decision, denied.resource) == ("deny", "plugin/crash-looper")
    assert not any(p.subject == "plugin/report-target" for p, _ in world.alerts.received)
