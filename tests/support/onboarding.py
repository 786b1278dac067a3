"""The onboarding workflow's real processes (tests/plugins/test_onboarding_e2e.py):
a `vivified core` granting the email gateway exactly the SMTP server's
address, aiosmtpd on loopback (STARTTLS, AUTH; see support/email_gateway.py),
`python -m vivified.plugins.user_management` and
`python -m vivified.plugins.email_gateway` as their own processes with their
own data dirs (all run by `vivified.sdk.testing.LocalCore`, whose tester
records the gateway's events), and an in-process watcher plugin that asks
the directory about onboarding."""

from __future__ import annotations

import contextlib
import json
import pathlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from google.protobuf.message import Message

from support.clients import audit_rows, operator_channel
from support.email_gateway import PASSWORD, SENDER, USERNAME, SmtpServer
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, core_view, run_cli
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.directory.v1 import directory_pb2 as dir_pb
from vivified.sdk import PluginRuntime, VivifiedSDKError
from vivified.sdk.testing import LocalCore, LocalCoreOptions, LocalPlugin

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
    local: LocalCore
    """Runs the core, the email gateway (the plugin under test; its tester receives the gateway's events)."""
    smtp: SmtpServer
    tmp: pathlib.Path
    max_attempts: int
    directory: LocalPlugin | None = None
    watcher: PluginRuntime | None = None
    traces: dict[str, str] = field(default_factory=dict)
    """user id -> the trace id `vivified users create` printed."""

    @property
    def core(self) -> CoreProcess:
        return core_view(self.local)

    # -- processes ---------------------------------------------------------

    def _plugin(self, plugin_id: str) -> LocalPlugin:
        plugin = self.local.plugin if plugin_id == GATEWAY else self.directory
        assert plugin is not None and plugin.plugin_id == plugin_id
        return plugin

    def log(self, plugin_id: str) -> pathlib.Path:
        return self._plugin(plugin_id).log_path

    async def start(self, plugin_id: str) -> None:
        """Approve (again) and run one of the two plugins; wait until it serves and subscribes."""
        await self._plugin(plugin_id).start()

    async def stop(self, plugin_id: str) -> None:
        await self._plugin(plugin_id).stop()

    async def crash(self, plugin_id: str) -> None:
        """SIGKILL: the plugin stays registered but stops answering (a clean stop
        would deregister it, which revokes its registration)."""
        await self._plugin(plugin_id).kill()

    async def subscription(self, plugin_id: str) -> Any:
        async with operator_channel(self.core) as channel:
            listed = await event_admin_pb2_grpc.EventAdminServiceStub(channel).ListSubscriptions(
                event_admin_pb2.ListSubscriptionsRequest(), timeout=5
            )
        return next((s for s in listed.subscriptions if s.subscription.startswith(f"{plugin_id}/")), None)

    async def configure_gateway(self, **values: str) -> None:
        for key, value in gateway_settings(self.smtp, self.max_attempts, **values).items():
            await self.local.set_config(key, value)

    # -- the workflow ------------------------------------------------------

    def create_user(self, username: str, display_name: str) -> tuple[str, str]:
        """`vivified users create` as the administrator; (user id, activation token)."""
        result = run_cli(
            self.core,
            "users",
            "create",
            "--username",
            username,
            "--email",
            f"{username}@example.com",
            "--display-name",
            display_name,
            "--role",
            "viewer",
            "--json",
            "--print-activation-token",
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
        """The gateway's events about `user_id`'s welcome mail, as its tester received them."""
        return [p for p in self.local.events_of(kind) if getattr(p, "email_id", "") == f"welcome-{user_id}"]


def gateway_settings(smtp: SmtpServer, max_attempts: int, **values: str) -> dict[str, str]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": str(smtp.port),
        "smtp_sender": SENDER,
        "smtp_username": USERNAME,
        "smtp_password": PASSWORD,
        "smtp_tls": "starttls",
        "smtp_ca_pem": smtp.ca_pem,
        "max_attempts": str(max_attempts),
        "retry_backoff_ms": "50",
        "smtp_timeout_seconds": "10",
        "activation_url": ACTIVATION_URL,
        **values,
    }


@contextlib.asynccontextmanager
async def onboarding_world(
    tmp: pathlib.Path, smtp: SmtpServer, *, max_attempts: int, **gateway: str
) -> AsyncIterator[Onboarding]:
    """A LocalCore running the gateway (configured for `smtp`, plus `gateway` values)
    with user-management beside it, and a watcher plugin that asks the directory."""
    egress = tmp / "egress.json"
    egress.write_text(json.dumps({"tunnel_grants": [{"plugin_id": GATEWAY, "host": "127.0.0.1", "port": smtp.port}]}))
    options = LocalCoreOptions(
        extra_flags=(
            "--heartbeat-interval",
            "1",
            "--egress-config",
            str(egress),
            "--event-max-attempts",
            str(max_attempts),
        )
    )
    async with LocalCore(
        _manifest("vivified.plugins.email_gateway"),
        None,
        tmp / "local",
        command=(sys.executable, "-m", "vivified.plugins.email_gateway"),
        config=gateway_settings(smtp, max_attempts, **gateway),
        options=options,
    ) as local:
        world = Onboarding(local, smtp, tmp, max_attempts)
        world.directory = await local.add_plugin(
            _manifest("vivified.plugins.user_management"), (sys.executable, "-m", "vivified.plugins.user_management")
        )
        calls = [
            {"plugin_id": DIRECTORY, "method": f"{DIRECTORY_SERVICE}/{m}"}
            for m in ("GetOnboardingStatus", "UpdateProfile")
        ]
        world.watcher = await started_plugin(
            world.core, write_manifest(tmp, "onboarding-watcher", calls=calls), [RecordingStore()]
        )
        try:
            yield world
        finally:
            await world.watcher.stop()


def verify_audit(core: CoreProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "audit", "--data-dir", str(core.data_dir), "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
