"""Restart from the stored key and certificate without a new join token
(catalogue M3), through a real core and real plugin processes: a plugin
killed with SIGKILL and started again with no join token resumes its
registration (`PluginRegistryService/Resume`), is routed nothing until the
core's Init succeeded again (M1), then serves calls through the core; a
revoked plugin's restart is refused (A5) and audited; one plugin's
certificate cannot resume another plugin (I2/I3: identity is the
certificate's); the endpoint is validated as in Register. Each refusal
asserts its status code, its reason and exactly one audit record."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
from collections.abc import Iterator
from importlib import resources

import grpc
import pytest

from support.clients import (
    admitted_plugin,
    approve,
    audit_rows,
    bootstrap_channel,
    error_info,
    manifest_message,
    operator_channel,
    plugin_channel,
)
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.communication.v1 import communication_pb2
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc
from vivified.sdk import load_manifest

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

PLUGIN = "example-echo"
RESUME = "/vivified.registry.v1.PluginRegistryService/Resume"
REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"
STATUS_METHOD = "vivified.communication.v1.CommunicationPluginService/GetMessageStatus"
MANIFEST = pathlib.Path(str(resources.files("vivified.plugins.example_echo") / "manifest.yaml"))


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """Each Init attempt gives up after a second, so a held Init is retried soon."""
    data_dir = tmp_path_factory.mktemp("resume-core") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--leaf-ttl", "600", "--init-timeout", "1") as running:
        yield running


class EchoProcess:
    """`python -m vivified.plugins.example_echo` with its own data dir and the
    conformance control hook (to hold Init back)."""

    def __init__(self, core: CoreProcess, directory: pathlib.Path) -> None:
        self.core = core
        self.data_dir = directory / "echo-data"
        self.control = directory / "control.jsonl"
        self.log_path = directory / "echo.log"
        self.process: object = None

    @property
    def identity_file(self) -> pathlib.Path:
        return self.data_dir / "vivified-identity.json"

    def start(self, token: str = "") -> None:
        env = clean_env(
            VIVIFIED_MANIFEST=str(MANIFEST),
            VIVIFIED_CA_FILE=str(self.core.operator_dir / "ca.crt"),
            VIVIFIED_BOOTSTRAP_ADDRESS=self.core.bootstrap_address,
            VIVIFIED_CORE_ADDRESS=self.core.listen_address,
            VIVIFIED_TRUST_DOMAIN=self.core.trust_domain,
            VIVIFIED_DATA_DIR=str(self.data_dir),
            VIVIFIED_CONFORMANCE_CONTROL=str(self.control),
            **({"VIVIFIED_JOIN_TOKEN": token} if token else {}),
        )
        self.process = spawn([sys.executable, "-m", "vivified.plugins.example_echo"], env, self.log_path)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        self.process.wait(timeout=10)  # type: ignore[attr-defined]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:  # type: ignore[attr-defined]
            stop_process(self.process)  # type: ignore[arg-type]


@pytest.fixture
def echo(core: CoreProcess, tmp_path: pathlib.Path) -> Iterator[EchoProcess]:
    running = EchoProcess(core, tmp_path)
    yield running
    running.stop()


async def listed(core: CoreProcess, plugin_id: str = PLUGIN) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in reply.plugins if p.plugin_id == plugin_id), None)


async def healthy(core: CoreProcess) -> bool:
    plugin = await listed(core)
    return bool(
        plugin and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
    )


async def started(echo: EchoProcess) -> None:
    """Approve the echo plugin (fresh token), start it with the token, wait until healthy."""
    approval = await approve(echo.core, load_manifest(MANIFEST), replace=True)
    echo.start(approval.join_token)
    await until(lambda: healthy(echo.core), 30, f"the echo plugin to register and pass Init:\n{echo.log()}")


async def call_status(core: CoreProcess, caller: object) -> str:
    """GetMessageStatus on the echo plugin through the core's operator lane: OK or CODE/REASON."""
    async with plugin_channel(core, caller) as channel:  # type: ignore[arg-type]
        call = channel.unary_unary(
            f"/{STATUS_METHOD}",
            request_serializer=communication_pb2.GetMessageStatusRequest.SerializeToString,
            response_deserializer=communication_pb2.GetMessageStatusResponse.FromString,
        )
        try:
            await call(
                communication_pb2.GetMessageStatusRequest(message_id="m-1"),
                metadata=(("x-vivified-target", PLUGIN),),
                timeout=5,
            )
        except grpc.aio.AioRpcError as err:
            reason = error_info(err).reason
            if (err.code(), reason) == (grpc.StatusCode.NOT_FOUND, "MESSAGE_NOT_FOUND"):
                return "OK"  # the echo plugin's own answer to an unknown id: it was reached
            return f"{err.code().name}/{reason}"
    return "OK"


async def test_m3_m1_a_sigkilled_plugin_resumes_without_a_join_token_and_is_routed_only_after_init(
    core: CoreProcess, echo: EchoProcess
) -> None:
    caller = await admitted_plugin(core, "resume-caller", calls=[{"plugin_id": PLUGIN, "method": STATUS_METHOD}])
    await started(echo)
    assert await call_status(core, caller) == "OK", echo.log()
    stored = json.loads(echo.identity_file.read_text())
    assert oct(echo.identity_file.stat().st_mode & 0o777) == "0o600"
    assert stored["spiffe_id"] == f"spiffe://{core.trust_domain}/plugin/{PLUGIN}"
    before_endpoint = (await listed(core)).endpoint  # type: ignore[union-attr]
    registrations = len(audit_rows(core, action=REGISTER, resource=f"plugin/{PLUGIN}"))

    echo.kill()
    hold = echo.control.with_name(echo.control.name + ".hold-init")
    hold.touch()  # the restarted process refuses Init until released
    echo.start()  # no join token at all
    resumed = lambda: audit_rows(core, actor=f"plugin:{PLUGIN}", action=RESUME)  # noqa: E731
    await until(lambda: bool(resumed()), 30, f"a Resume:\n{echo.log()}")
    rows = resumed()
    assert [(r.decision, r.outcome, r.resource) for r in rows] == [("allow", "OK", f"plugin/{PLUGIN}")]
    plugin = await listed(core)
    assert plugin is not None and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE
    assert plugin.endpoint != before_endpoint and json.loads(rows[0].detail)["endpoint"] == plugin.endpoint
    # Until its Init succeeded the resumed process is routed nothing (M1).
    await until(
        lambda: _health_is(core, admin_pb.PLUGIN_HEALTH_UNHEALTHY), 15, f"a refused Init:\n{echo.log()}\n{core.log()}"
    )
    assert await call_status(core, caller) == "UNAVAILABLE/TARGET_UNAVAILABLE"
    hold.unlink()
    await until(lambda: healthy(core), 30, f"the retried Init to succeed:\n{echo.log()}")
    assert await call_status(core, caller) == "OK"
    assert "resumed as spiffe://" in echo.log()
    # No new registration, no new token: the certificate from before the kill is the one in use.
    assert len(audit_rows(core, action=REGISTER, resource=f"plugin/{PLUGIN}")) == registrations
    assert json.loads(echo.identity_file.read_text())["chain_pem"] == stored["chain_pem"]

    # A clean stop deregisters and removes the stored identity: nothing to resume from.
    echo.stop()
    assert not echo.identity_file.exists()
    assert (await listed(core)).status == admin_pb.PLUGIN_STATUS_REVOKED  # type: ignore[union-attr]


async def _health_is(core: CoreProcess, health: int) -> bool:
    plugin = await listed(core)
    return plugin is not None and plugin.health == health


async def test_m3_a5_a_revoked_plugin_restarted_without_a_token_is_refused_and_audited(
    core: CoreProcess, echo: EchoProcess
) -> None:
    await started(echo)
    echo.kill()
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).RevokePlugin(
            admin_pb.RevokePluginRequest(plugin_id=PLUGIN, reason="resume test"), timeout=5
        )
    before = len(audit_rows(core, actor=f"plugin:{PLUGIN}", action=RESUME))
    echo.start()
    code = echo.process.wait(timeout=30)  # type: ignore[attr-defined]
    assert code != 0, echo.log()
    assert "UNAUTHENTICATED [vivified.auth/CERTIFICATE_REVOKED]" in echo.log()
    assert "no join token" in echo.log()
    rows = audit_rows(core, actor=f"plugin:{PLUGIN}", action=RESUME)[before:]
    assert [(r.decision, r.outcome, r.reason) for r in rows] == [("deny", "UNAUTHENTICATED", "CERTIFICATE_REVOKED")]
    assert not echo.identity_file.exists()  # refused for good: removed
    assert (await listed(core)).status == admin_pb.PLUGIN_STATUS_REVOKED  # type: ignore[union-attr]


async def test_m3_a5_a_revoked_plugin_restarted_with_a_new_token_registers_afresh(
    core: CoreProcess, echo: EchoProcess
) -> None:
    await started(echo)
    echo.kill()
    approval = await approve(core, load_manifest(MANIFEST), replace=True)  # revokes the old certificates
    registrations = len(audit_rows(core, action=REGISTER, resource=f"plugin/{PLUGIN}"))
    echo.start(approval.join_token)
    await until(lambda: healthy(core), 30, f"the plugin to register again:\n{echo.log()}")
    assert "registering" in echo.log() and "CERTIFICATE_REVOKED" in echo.log()
    assert len(audit_rows(core, action=REGISTER, resource=f"plugin/{PLUGIN}")) == registrations + 1


async def test_m3_i3_one_plugins_certificate_cannot_resume_another_plugin(core: CoreProcess) -> None:
    victim = await admitted_plugin(core, "resume-victim")
    intruder = await admitted_plugin(core, "resume-intruder")
    endpoint = (await listed(core, "resume-victim")).endpoint  # type: ignore[union-attr]
    async with plugin_channel(core, intruder) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reg_grpc.PluginRegistryServiceStub(channel).Resume(
                reg_pb.ResumeRequest(manifest=manifest_message(victim.plugin_id), endpoint="127.0.0.1:2"), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value).reason == "MANIFEST_NOT_APPROVED"
    rows = audit_rows(core, actor="plugin:resume-intruder", action=RESUME)
    assert [(r.decision, r.outcome, r.reason, r.resource) for r in rows] == [
        ("deny", "PERMISSION_DENIED", "MANIFEST_NOT_APPROVED", "plugin/resume-victim")
    ]
    assert (await listed(core, "resume-victim")).endpoint == endpoint  # type: ignore[union-attr]


async def test_m3_resume_validates_the_endpoint_as_register_does(core: CoreProcess) -> None:
    plugin = await admitted_plugin(core, "resume-endpoint")
    async with plugin_channel(core, plugin) as channel:
        stub = reg_grpc.PluginRegistryServiceStub(channel)
        for endpoint in ("no-port", "unix:/tmp/another-plugin/plugin.sock"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Resume(
                    reg_pb.ResumeRequest(manifest=manifest_message(plugin.plugin_id), endpoint=endpoint), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, endpoint
            assert error_info(refused.value).reason == "INVALID_REQUEST", endpoint
        # The same certificate, a valid endpoint: resumed (and sent Init there).
        reply = await stub.Resume(
            reg_pb.ResumeRequest(manifest=manifest_message(plugin.plugin_id), endpoint="127.0.0.1:3"), timeout=10
        )
    assert reply.heartbeat_interval_seconds == 1 and reply.core_endpoint and reply.ca_bundle_pem
    assert reply.expire_time.seconds == int(plugin.leaf.not_valid_after_utc.timestamp())
    rows = audit_rows(core, actor="plugin:resume-endpoint", action=RESUME)
    # A malformed request is not a denial (decision allow, as for Register): its outcome says it failed.
    assert [(r.decision, r.outcome, r.reason) for r in rows] == [
        ("allow", "INVALID_ARGUMENT", "INVALID_REQUEST"),
        ("allow", "INVALID_ARGUMENT", "INVALID_REQUEST"),
        ("allow", "OK", ""),
    ]
    assert (await listed(core, "resume-endpoint")).endpoint == "127.0.0.1:3"  # type: ignore[union-attr]


async def test_m3_resume_needs_a_plugin_certificate(core: CoreProcess) -> None:
    """Default deny: without a certificate (the bootstrap port) or with an
    operator's, Resume is refused by the policy and audited once each."""
    request = reg_pb.ResumeRequest(manifest=load_manifest(MANIFEST), endpoint="127.0.0.1:4")
    before = len(audit_rows(core, action=RESUME))
    async with bootstrap_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await reg_grpc.PluginRegistryServiceStub(channel).Resume(request, timeout=10)
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as operator:
            await reg_grpc.PluginRegistryServiceStub(channel).Resume(request, timeout=10)
    # No identity at all is UNAUTHENTICATED; a known identity not allowed is PERMISSION_DENIED.
    assert (anonymous.value.code(), error_info(anonymous.value).reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "IDENTITY_MISSING",
    )
    assert (operator.value.code(), error_info(operator.value).reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "POLICY_DENIED",
    )
    rows = audit_rows(core, action=RESUME)[before:]
    assert [(r.actor.split(":")[0], r.decision, r.reason, r.outcome) for r in rows] == [
        ("anonymous", "deny", "IDENTITY_MISSING", "UNAUTHENTICATED"),
        ("operator", "deny", "POLICY_DENIED", "PERMISSION_DENIED"),
    ]
