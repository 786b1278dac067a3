"""The onboarding workflow's real processes (tests/plugins/test_onboarding_e2e.py):
a `vivified core` granting the email gateway exactly the SMTP server's
address, aiosmtpd on loopback (STARTTLS, AUTH; see support/email_gateway.py),
`python -m vivified.plugins.user_management` and
`python -m vivified.plugins.email_gateway` as their own processes with their
own data dirs, and an in-process watcher plugin that records the gateway's
events and asks the directory about onboarding."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from google.protobuf.message import Message
from support.clients import approve, audit_rows, operator_channel
from support.email_gateway import PASSWORD, SENDER, USERNAME, Observer, SmtpServer
from support.lane import RecordingStore, plugin_state, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, run_cli, spawn, start_core, stop_process
from support.waiting import until
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.core.manifest import load_manifest_file
from vivified.directory.v1 import directory_pb2 as dir_pb
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailQueued, EmailSent
from vivified.sdk import PluginRuntime, VivifiedSDKError

GATEWAY = "email-gateway"
DIRECTORY = "user-management"
DIRECTORY_SERVICE = "vivified.directory.v1.DirectoryService"
GET_PROFILE = f"/{DIRECTORY_SERVICE}/GetProfile"
CREATE_USER = "/vivified.identity.v1.UserAdminService/CreateUser"
CONNECT = "/vivified.egress.v1.EgressProxyService/Connect"
ACTIVATION_URL = "https://people.example.com/activate?token={token}"


def _manifest(package: str) -> pathlib.Path:
    return pathlib.Path(str(resources.files(package) / "manifest.yaml"))


@dataclass
class Onboarding:
    core: CoreProcess
    smtp: SmtpServer
    tmp: pathlib.Path
    max_attempts: int
    watcher: PluginRuntime | None = None
    observer: Observer = field(default_factory=Observer)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    traces: dict[str, str] = field(default_factory=dict)
    """user id -> the trace id `vivified users create` printed."""

    # -- processes ---------------------------------------------------------

    def log(self, plugin_id: str) -> pathlib.Path:
        return self.tmp / f"{plugin_id}.log"

    async def start(self, plugin_id: str) -> None:
        """Approve (again) and run one of the two plugins; wait until it serves and subscribes."""
        package = {GATEWAY: "vivified.plugins.email_gateway", DIRECTORY: "vivified.plugins.user_management"}[plugin_id]
        manifest_path = _manifest(package)
        approval = await approve(self.core, load_manifest_file(manifest_path), replace=True)
        data_dir = self.tmp / f"{plugin_id}-data"
        env = clean_env(
            VIVIFIED_MANIFEST=str(manifest_path), VIVIFIED_JOIN_TOKEN=approval.join_token,
            VIVIFIED_CA_FILE=str(self.core.operator_dir / "ca.crt"), VIVIFIED_CORE_ADDRESS=self.core.listen_address,
            VIVIFIED_BOOTSTRAP_ADDRESS=self.core.bootstrap_address, VIVIFIED_TRUST_DOMAIN=self.core.trust_domain,
            VIVIFIED_DATA_DIR=str(data_dir), VIVIFIED_PLUGIN_DATA_DIR=str(data_dir),
        )
        self.processes[plugin_id] = spawn([sys.executable, "-m", package], env, self.log(plugin_id))

        async def ready() -> bool:
            state = await plugin_state(self.core, plugin_id)
            if not (state and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
                    and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY):
                return False
            return await self.subscription(plugin_id) is not None

        await until(ready, 60, f"{plugin_id} to serve and subscribe:\n{self.log(plugin_id).read_text(errors='replace')}")

    def stop(self, plugin_id: str) -> None:
        process = self.processes.pop(plugin_id, None)
        if process is not None:
            stop_process(process)

    def crash(self, plugin_id: str) -> None:
        """SIGKILL: the plugin stays registered but stops answering (a clean stop
        would deregister it, which revokes its registration)."""
        process = self.processes.pop(plugin_id)
        process.kill()
        process.wait()

    async def subscription(self, plugin_id: str) -> Any:
        async with operator_channel(self.core) as channel:
            listed = await event_admin_pb2_grpc.EventAdminServiceStub(channel).ListSubscriptions(
                event_admin_pb2.ListSubscriptionsRequest(), timeout=5
            )
        return next((s for s in listed.subscriptions if s.subscription.startswith(f"{plugin_id}/")), None)

    async def configure_gateway(self, **values: str) -> None:
        settings = {
            "smtp_host": "127.0.0.1", "smtp_port": str(self.smtp.port), "smtp_sender": SENDER,
            "smtp_username": USERNAME, "smtp_password": PASSWORD, "smtp_tls": "starttls",
            "smtp_ca_pem": self.smtp.ca_pem, "max_attempts": str(self.max_attempts), "retry_backoff_ms": "50",
            "smtp_timeout_seconds": "10", "activation_url": ACTIVATION_URL, **values,
        }
        async with operator_channel(self.core) as channel:
            stub = config_pb2_grpc.ConfigServiceStub(channel)
            for key, value in settings.items():
                await stub.SetPluginConfigValue(
                    config_pb2.SetPluginConfigValueRequest(plugin_id=GATEWAY, key=key, value=value,
                                                           reason="onboarding test"),
                    timeout=10,
                )

    # -- the workflow ------------------------------------------------------

    def create_user(self, username: str, display_name: str) -> tuple[str, str]:
        """`vivified users create` as the administrator; (user id, activation token)."""
        result = run_cli(
            self.core, "users", "create", "--username", username, "--email", f"{username}@example.com",
            "--display-name", display_name, "--role", "viewer", "--json", "--print-activation-token",
        )
        assert result.returncode == 0, result.stderr
        created = json.loads(result.stdout)
        user_id = str(created["user"]["user_id"])
        self.traces[user_id] = created["trace_id"]
        return user_id, str(created["activation_token"])

    def trace_of_creation(self, user_id: str) -> str:
        """The trace the CLI started; the CreateUser call's audit record carries it."""
        (row,) = audit_rows(self.core, action=CREATE_USER, resource=f"user/{user_id}")
        assert row.trace_id == self.traces[user_id] and len(row.trace_id) == 32
        return str(row.trace_id)

    async def onboarding(self, user_id: str) -> dir_pb.GetOnboardingStatusResponse | None:
        assert self.watcher is not None
        try:
            reply = await self.watcher.call(DIRECTORY, dir_pb.GetOnboardingStatusRequest(user_id=user_id), timeout=10)
        except VivifiedSDKError:
            return None
        assert isinstance(reply, dir_pb.GetOnboardingStatusResponse)
        return reply

    async def state_is(self, user_id: str, state: int) -> dir_pb.GetOnboardingStatusResponse | None:
        reply = await self.onboarding(user_id)
        return reply if reply is not None and reply.state == state else None

    def mails(self, user_id: str) -> list[Any]:
        return self.smtp.recorder.by_id(f"welcome-{user_id}")

    def events_of(self, kind: type[Message], user_id: str) -> list[Any]:
        return self.observer.of(kind, f"welcome-{user_id}")


async def open_world(tmp: pathlib.Path, smtp: SmtpServer, *, max_attempts: int) -> Onboarding:
    egress = tmp / "egress.json"
    egress.write_text(json.dumps({"tunnel_grants": [{"plugin_id": GATEWAY, "host": "127.0.0.1", "port": smtp.port}]}))
    core = start_core(tmp / "data", "--heartbeat-interval", "1", "--egress-config", str(egress),
                      "--event-max-attempts", str(max_attempts))
    world = Onboarding(core, smtp, tmp, max_attempts)
    try:
        await approve(core, load_manifest_file(_manifest("vivified.plugins.email_gateway")), replace=True)
        await world.configure_gateway()
        await world.start(DIRECTORY)
        await world.start(GATEWAY)
        calls = [{"plugin_id": DIRECTORY, "method": f"{DIRECTORY_SERVICE}/{m}"}
                 for m in ("GetOnboardingStatus", "UpdateProfile")]
        world.watcher = await started_plugin(core, write_manifest(
            tmp, "onboarding-watcher", calls=calls,
            subscribes=["vivified.events.v1.EmailQueued", "vivified.events.v1.EmailSent",
                        "vivified.events.v1.EmailFailed"],
        ), [RecordingStore()])
        observer = world.observer
        await world.watcher.subscribe(
            "mail", {EmailQueued: observer.record, EmailSent: observer.record, EmailFailed: observer.record}
        ).opened()
    except BaseException:
        await close_world(world)
        raise
    return world


async def close_world(world: Onboarding) -> None:
    if world.watcher is not None:
        await world.watcher.stop()
    for plugin_id in list(world.processes):
        world.stop(plugin_id)
    stop_process(world.core.process)


def verify_audit(core: CoreProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "audit", "--data-dir", str(core.data_dir), "verify"],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )
