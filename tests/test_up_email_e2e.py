"""`vivified up` in the development profile runs a local SMTP sink and both
reference plugins: `vivified users create` leaves a personalised welcome mail
in the outbox. A
SendMessage to the bundled email gateway leaves the mail in
`<data-dir>/outbox/1.eml`; the gateway's tunnel reaches exactly the sink; an
SMTP server an administrator configured is left alone on the next start."""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
import subprocess
import sys

import pytest

from support.clients import audit_rows, operator_channel
from support.lane import RecordingStore, plugin_state, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.communication.v1 import communication_pb2 as pb
from vivified.config.v1 import config_pb2, config_pb2_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]
GATEWAY = "email-gateway"
CONNECT = "/vivified.egress.v1.EgressProxyService/Connect"


async def _up(data: pathlib.Path, log_path: pathlib.Path) -> tuple[subprocess.Popen[bytes], CoreProcess]:
    run_file = data / "run" / "core.json"
    run_file.unlink(missing_ok=True)
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
        state = await plugin_state(core, GATEWAY)
        return bool(
            state and state.status == admin_pb.PLUGIN_STATUS_ACTIVE and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY
        )

    await until(healthy, 60, f"{GATEWAY} to become healthy:\n{log_path.read_text(errors='replace')}")
    return up, core


async def _config(core: CoreProcess) -> dict[str, str]:
    async with operator_channel(core) as channel:
        reply = await config_pb2_grpc.ConfigServiceStub(channel).GetPluginConfig(
            config_pb2.GetPluginConfigRequest(plugin_id=GATEWAY), timeout=10
        )
    return {v.key: v.value for v in reply.values}


async def test_up_sends_mail_to_the_development_outbox(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "up.log"
    up, core = await _up(data, log_path)
    try:
        sink_line = next(line for line in log_path.read_text().splitlines() if "development SMTP sink" in line)
        port = int(sink_line.split("smtp://127.0.0.1:", 1)[1].split(",", 1)[0])
        config = await _config(core)
        assert (config["smtp_host"], config["smtp_port"], config["smtp_tls"]) == ("127.0.0.1", str(port), "none")

        manifest = write_manifest(
            tmp_path,
            "mail-caller",
            calls=[
                {"plugin_id": GATEWAY, "method": "vivified.communication.v1.CommunicationPluginService/SendMessage"}
            ],
        )
        caller = await started_plugin(core, manifest, [RecordingStore()])
        try:
            reply = await caller.call(
                GATEWAY,
                pb.SendMessageRequest(
                    message=pb.CanonicalMessage(
                        message_id="up-1",
                        to_address="ada@example.com",
                        subject="Hello from up",
                        content="It works.\n",
                    )
                ),
                timeout=30,
            )
        finally:
            await caller.stop()
        assert isinstance(reply, pb.SendMessageResponse) and reply.status == pb.DELIVERY_STATUS_DELIVERED
        outbox = data / "outbox" / "1.eml"
        await until(outbox.exists, 10, "the mail in the outbox")
        mail = email.message_from_bytes(outbox.read_bytes(), policy=email.policy.default)
        assert (mail["To"], mail["Subject"], mail["From"]) == (
            "ada@example.com",
            "Hello from up",
            "vivified@vivified.local",
        )
        assert mail.get_content().replace("\r\n", "\n") == "It works.\n"
        [tunnel] = audit_rows(core, action=CONNECT)
        facts = json.loads(tunnel.detail)
        assert (tunnel.actor, tunnel.outcome, facts["address"], facts["port"]) == (
            f"plugin:{GATEWAY}",
            "OK",
            "127.0.0.1",
            str(port),
        )
        assert int(facts["bytes_sent"]) > 0 and int(facts["bytes_received"]) > 0

        # An administrator points the gateway at another server: the next `up` leaves it alone.
        async with operator_channel(core) as channel:
            await config_pb2_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
                config_pb2.SetPluginConfigValueRequest(
                    plugin_id=GATEWAY, key="smtp_host", value="smtp.example.net", reason="our relay"
                ),
                timeout=10,
            )
    finally:
        assert stop_process(up) == 0, log_path.read_text()
    up, core = await _up(data, tmp_path / "up2.log")
    try:
        assert (await _config(core))["smtp_host"] == "smtp.example.net"
    finally:
        assert stop_process(up) == 0
    verified = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "audit", "--data-dir", str(data), "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_up_runs_user_management_and_users_create_leaves_a_welcome_mail(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "up.log"
    up, core = await _up(data, log_path)
    try:

        async def directory_healthy() -> bool:
            state = await plugin_state(core, "user-management")
            return bool(state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY)

        await until(
            directory_healthy, 60, f"user-management to become healthy:\n{log_path.read_text(errors='replace')}"
        )
        assert (data / "plugins" / "user-management").is_dir()  # its data dir, from VIVIFIED_DATA_DIR
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "vivified.core.cli",
                "users",
                "--data-dir",
                str(data),
                "create",
                "--username",
                "ada",
                "--email",
                "ada@example.com",
                "--display-name",
                "Ada L",
                "--role",
                "viewer",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
        assert created.returncode == 0, created.stderr
        trace = json.loads(created.stdout)["trace_id"]
        outbox = data / "outbox" / "1.eml"
        await until(outbox.exists, 20, "the welcome mail in the outbox")
        mail = email.message_from_bytes(outbox.read_bytes(), policy=email.policy.default)
        assert (mail["To"], mail["Subject"]) == ("ada@example.com", "Welcome to Vivified, Ada L")
        text = mail.get_content().replace("\r\n", "\n")
        assert text.startswith("Hello Ada L,\n") and "https://vivified.local/activate?token=vat_" in text

        def directory_told() -> bool:
            rows = audit_rows(core, trace_id=trace, actor="plugin:user-management", action="event.deliver")
            return any(json.loads(r.detail)["event_type"] == "vivified.events.v1.EmailSent" for r in rows)

        await until(directory_told, 20, "EmailSent delivered to user-management under the creation's trace")
        lookups = audit_rows(core, trace_id=trace, action="/vivified.directory.v1.DirectoryService/GetProfile")
        assert [(r.actor, r.outcome) for r in lookups] == [(f"plugin:{GATEWAY}", "OK")]
    finally:
        assert stop_process(up) == 0, log_path.read_text()
    assert "crashed" not in log_path.read_text()
