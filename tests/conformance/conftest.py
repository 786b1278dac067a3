"""Fixtures of the conformance suite: a real core per module, a plugin process
started with a fresh join token, and a client that presents the core's own
identity (minted from the core's CA in its data dir, as the core's connector
would) to talk to a plugin directly."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from conformance.plugins import PluginUnderTest, ToGenerate, discover, generated
from support.clients import approve, operator_channel
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.ca import CAConfig, CertificateAuthority, new_private_key
from vivified.core.clock import SystemClock
from vivified.core.manifest import load_manifest_file

UNDER_TEST = discover()
# One SQLite core with no replicas: the bound on unread registry changes (which makes a replica
# fail closed) is widened so a loaded test machine does not refuse the suite's approvals; the
# suite checks the plugin, not that bound.
SYNC_BOUND = ("--registry-sync-bound", "10")


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("generated-plugins")


@pytest.fixture(params=UNDER_TEST, ids=[p.name for p in UNDER_TEST], scope="module")
def under_test(request: pytest.FixtureRequest, generated_dir: pathlib.Path) -> PluginUnderTest:
    spec: PluginUnderTest | ToGenerate = request.param
    return generated(spec, generated_dir) if isinstance(spec, ToGenerate) else spec


@pytest.fixture(scope="module")
def conformance_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("conformance") / "data"
    with core_running(data_dir, *SYNC_BOUND, "--heartbeat-interval", "1", "--leaf-ttl", "600") as core:
        yield core


@dataclass
class RunningPlugin:
    spec: PluginUnderTest
    core: CoreProcess
    process: object
    log_path: pathlib.Path
    token: str
    control_path: pathlib.Path
    """The conformance control hook's file (VIVIFIED_CONFORMANCE_CONTROL, docs/plugin-protocol.md)."""
    env: dict[str, str] = field(default_factory=dict)
    """The environment its process was started with."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def control(self, check: str) -> list[dict[str, Any]]:
        """The records of one kind (`event`, `error`, `init`) the plugin appended to its control file."""
        if not self.control_path.exists():
            return []
        records = [json.loads(line) for line in self.control_path.read_text().splitlines() if line.strip()]
        return [r for r in records if r.get("check") == check]


async def listed(core: CoreProcess, plugin_id: str) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in reply.plugins if p.plugin_id == plugin_id), None)


async def healthy(core: CoreProcess, plugin_id: str) -> admin_pb.Plugin | None:
    plugin = await listed(core, plugin_id)
    ok = plugin and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
    return plugin if ok else None


async def start_plugin(
    core: CoreProcess, spec: PluginUnderTest, log_dir: pathlib.Path, *, hold_init: bool = False, control: bool = True
) -> RunningPlugin:
    """Approve the manifest (fresh token), start the plugin's command with the control hook on (unless
    `control` is False: then the plugin runs as in production, provoking no refusals of its own), and wait
    until the core has it healthy (with `hold_init`, the hook refuses Init: wait only until it registered)."""
    control_path = log_dir / f"{spec.name}-control.jsonl"
    if hold_init:
        control_path.with_name(control_path.name + ".hold-init").touch()
    approval = await approve(core, load_manifest_file(spec.manifest), replace=True)
    env = clean_env(
        VIVIFIED_MANIFEST=str(spec.manifest),
        VIVIFIED_JOIN_TOKEN=approval.join_token,
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"),
        VIVIFIED_BOOTSTRAP_ADDRESS=core.bootstrap_address,
        VIVIFIED_CORE_ADDRESS=core.listen_address,
        VIVIFIED_TRUST_DOMAIN=core.trust_domain,
        # A plugin that keeps state (user_management) requires its own directory.
        VIVIFIED_DATA_DIR=str(log_dir / f"{spec.name}-data"),
        **({"VIVIFIED_CONFORMANCE_CONTROL": str(control_path)} if control else {}),
        **dict(spec.env),
    )
    log_path = log_dir / f"{spec.name}.log"
    process = spawn(spec.command, env, log_path)
    running = RunningPlugin(spec, core, process, log_path, approval.join_token, control_path, env)
    if hold_init:
        await until(lambda: running.control("init"), 30, f"{spec.name} to register and be sent Init:\n{running.log()}")
        return running
    await until(
        lambda: healthy(core, spec.plugin_id),
        30,
        f"{spec.name} to register and pass Init:\n{running.log()}\n{core.log()[-3000:]}",
    )
    return running


def restart_without_token(running: RunningPlugin) -> RunningPlugin:
    """Start the plugin's command again with the same environment but no
    join token (its data dir, and whatever the plugin stored there, kept)."""
    env = {k: v for k, v in running.env.items() if k != "VIVIFIED_JOIN_TOKEN"}
    process = spawn(running.spec.command, env, running.log_path)
    return RunningPlugin(running.spec, running.core, process, running.log_path, "", running.control_path, env)


@pytest_asyncio.fixture
async def plugin(
    conformance_core: CoreProcess, under_test: PluginUnderTest, tmp_path: pathlib.Path
) -> AsyncIterator[RunningPlugin]:
    running = await start_plugin(conformance_core, under_test, tmp_path)
    yield running
    stop_process(running.process)  # type: ignore[arg-type]


def core_credentials(core: CoreProcess) -> grpc.ChannelCredentials:
    """The core's identity (URI SAN spiffe://<td>/core), issued by the core's CA."""
    ca = CertificateAuthority.load_or_create(
        core.data_dir / "ca", CAConfig(trust_domain=core.trust_domain), SystemClock()
    )
    key = new_private_key()
    issued = ca.issue_core_certificate(key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return grpc.ssl_channel_credentials(ca.root_pem, key_pem, issued.chain_pem)


def plugin_target(core: CoreProcess, plugin_id: str) -> list[tuple[str, str]]:
    """The name the core verifies on a plugin's server certificate: its DNS SAN."""
    return [("grpc.ssl_target_name_override", f"{plugin_id}.plugin.{core.trust_domain}")]


async def wait_exit(process: object, timeout: float) -> int | None:
    proc = process  # subprocess.Popen
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        code = proc.poll()  # type: ignore[attr-defined]
        if code is not None:
            return code  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    return None
