"""A plugin in a container serves on one address and is called back on another:
`VIVIFIED_LISTEN_HOST` and `VIVIFIED_ADVERTISE_HOST` (deploy/ sets them; in
Kubernetes the advertised host is the pod IP). Through a real core: the plugin
registers the advertised host as its endpoint, and the core reaches it there for
Init and the health check. On loopback here: it listens on 127.0.0.1 and
advertises `localhost`."""

from __future__ import annotations

import pathlib

import pytest

from support.clients import approve
from support.lane import plugin_state
from support.processes import core_running
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.plugins.example_echo.plugin import EchoCommunicationPlugin
from vivified.sdk import PluginRuntime, PluginSettings, load_manifest

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "example_echo" / "manifest.yaml"


async def test_plugin_is_called_back_on_its_advertised_host(tmp_path: pathlib.Path) -> None:
    with core_running(tmp_path / "core") as core:
        manifest = load_manifest(MANIFEST)
        approval = await approve(core, manifest, replace=True)
        settings = PluginSettings.from_env(
            {
                "VIVIFIED_MANIFEST": str(MANIFEST),
                "VIVIFIED_JOIN_TOKEN": approval.join_token,
                "VIVIFIED_CA_FILE": str(core.operator_dir / "ca.crt"),
                "VIVIFIED_CORE_ADDRESS": core.listen_address,
                "VIVIFIED_BOOTSTRAP_ADDRESS": core.bootstrap_address,
                "VIVIFIED_LISTEN_HOST": "127.0.0.1",
                "VIVIFIED_ADVERTISE_HOST": "localhost",
            }
        )
        runtime = PluginRuntime([EchoCommunicationPlugin()], settings)
        await runtime.start()
        try:

            async def healthy() -> bool:
                state = await plugin_state(core, manifest.id)
                return bool(
                    state
                    and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
                    and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY
                )

            await until(healthy, 30, "the core to reach the plugin on its advertised host (Init + health)")
            state = await plugin_state(core, manifest.id)
            assert state is not None
            host, _, port = state.endpoint.rpartition(":")
            assert host == "localhost" and int(port) > 0, state.endpoint
        finally:
            await runtime.stop()
