"""The example plugin as a real process: `python -m vivified.plugins.example_echo`
registers with a fake core, serves, and stops gracefully on SIGTERM (exit 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vivified.sdk.testing import FakeCore

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

PLUGIN = "example-echo"


def plugin_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    env.update(variables)
    return env


async def spawn(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vivified.plugins.example_echo", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )


async def test_sigterm_stops_the_plugin_gracefully(fake_core: FakeCore, tmp_path: Path, manifest_path: Path) -> None:
    settings = fake_core.settings(tmp_path, manifest_path)
    log = tmp_path / "plugin.log"
    process = await spawn(
        plugin_env(
            VIVIFIED_MANIFEST=str(manifest_path),
            VIVIFIED_JOIN_TOKEN=settings.join_token,
            VIVIFIED_CA_FILE=str(settings.ca_file),
            VIVIFIED_CORE_ADDRESS=fake_core.core_address,
            VIVIFIED_BOOTSTRAP_ADDRESS=fake_core.bootstrap_address,
            VIVIFIED_TRUST_DOMAIN="vivified.local",
        ),
        log,
    )
    try:
        await asyncio.wait_for(fake_core.initialised.wait(), 30)
        assert fake_core.init_results == [True], log.read_text()
        endpoint = fake_core.registrations[0].endpoint
        async with fake_core.plugin_channel(endpoint, PLUGIN) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log.read_text()
    assert code == 0, output
    assert fake_core.deregistrations == [(f"spiffe://vivified.local/plugin/{PLUGIN}", "SIGTERM")]
    assert "plugin stopped: SIGTERM" in output
    assert settings.join_token not in output


async def test_missing_settings_exit_non_zero_naming_the_variable(tmp_path: Path) -> None:
    log = tmp_path / "plugin.log"
    process = await spawn(plugin_env(VIVIFIED_MANIFEST="m.yaml", VIVIFIED_CA_FILE="ca.crt"), log)
    code = await asyncio.wait_for(process.wait(), 30)
    assert code == 1
    assert "VIVIFIED_JOIN_TOKEN" in log.read_text()
    assert "Traceback" not in log.read_text()
