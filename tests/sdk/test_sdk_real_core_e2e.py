"""The SDK against a real core process: approve → register → the core's Init and
health check reach the plugin over mTLS → heartbeats → deregister; revocation
makes the core send Shutdown; short-lived certificates are renewed in place.
The audit log is checked for each step."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest
from cryptography import x509

from support.clients import approve, audit_rows, operator_channel
from support.processes import CoreProcess, core_running
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PluginRuntime, PluginSettings, load_manifest

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

PLUGIN = "example-echo"
ACTOR = f"plugin:{PLUGIN}"
REGISTRY = "/vivified.registry.v1.PluginRegistryService"


async def listed(core: CoreProcess) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in reply.plugins if p.plugin_id == PLUGIN), None)


async def _beat_after(core: CoreProcess, nanos: int) -> bool:
    """Whether the core accepted a heartbeat of the plugin after `nanos` (epoch ns)."""
    plugin = await listed(core)
    return plugin is not None and plugin.last_heartbeat_time.ToNanoseconds() > nanos


async def approved_runtime(core: CoreProcess, manifest_path: pathlib.Path) -> PluginRuntime:
    approval = await approve(core, load_manifest(manifest_path), replace=True)
    settings = PluginSettings(
        manifest_path=manifest_path,
        join_token=approval.join_token,
        ca_file=core.operator_dir / "ca.crt",
        core_address=core.listen_address,
        bootstrap_address=core.bootstrap_address,
        trust_domain=core.trust_domain,
        shutdown_grace_seconds=1.0,
    )
    return PluginRuntime([EchoCommunicationPlugin()], settings)


async def healthy(core: CoreProcess) -> bool:
    plugin = await listed(core)
    return bool(
        plugin and plugin.status == admin_pb.PLUGIN_STATUS_ACTIVE and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
    )


async def test_register_init_heartbeat_deregister(core: CoreProcess, manifest_path: pathlib.Path) -> None:
    runtime = await approved_runtime(core, manifest_path)
    await runtime.start()
    try:
        await until(lambda: healthy(core), 30, f"the core's Init and health check to pass:\n{core.log()}")
        assert runtime.initialised
        leaf = x509.load_pem_x509_certificate(runtime.certificate_pem)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://vivified.local/plugin/{PLUGIN}"]
        # Heartbeats are accepted (the listed time moves) but not audited one by
        # one: liveness is audited as its transitions, here the one to healthy.
        first = (await listed(core)).last_heartbeat_time.ToNanoseconds()  # type: ignore[union-attr]
        await until(lambda: _beat_after(core, first), 10, "an accepted heartbeat")
        assert audit_rows(core, actor=ACTOR, action=f"{REGISTRY}/Heartbeat") == []
        became = audit_rows(core, action="plugin.healthy", resource=f"plugin/{PLUGIN}")
        assert [(r.actor, r.outcome) for r in became][-1:] == [("core:core", "OK")]
    finally:
        await runtime.stop("e2e done")
    deregistered = audit_rows(core, actor=ACTOR, action=f"{REGISTRY}/Deregister")
    assert [(r.decision, r.outcome) for r in deregistered] == [("allow", "OK")]
    plugin = await listed(core)
    assert plugin is not None and plugin.status == admin_pb.PLUGIN_STATUS_REVOKED


async def test_revocation_makes_the_core_shut_the_plugin_down(core: CoreProcess, manifest_path: pathlib.Path) -> None:
    runtime = await approved_runtime(core, manifest_path)
    await runtime.start()
    try:
        await until(lambda: healthy(core), 30, "the plugin to be healthy")
        async with operator_channel(core) as channel:
            await admin_grpc.PluginAdminServiceStub(channel).RevokePlugin(
                admin_pb.RevokePluginRequest(plugin_id=PLUGIN, reason="e2e"), timeout=5
            )
        await asyncio.wait_for(runtime.wait_closed(), 15)
        assert runtime.failure is None
    finally:
        await runtime.stop()


@pytest.mark.slow
async def test_short_lived_certificates_are_renewed_against_the_real_core(
    tmp_path: pathlib.Path, manifest_path: pathlib.Path
) -> None:
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--leaf-ttl", "10") as short_core:
        runtime = await approved_runtime(short_core, manifest_path)
        await runtime.start()
        try:
            first = x509.load_pem_x509_certificate(runtime.certificate_pem)
            await until(lambda: healthy(short_core), 30, "the plugin to be healthy")
            await until(lambda: runtime.renewals >= 1, 15, f"a renewal:\n{short_core.log()}")
            renewed = audit_rows(short_core, actor=ACTOR, action=f"{REGISTRY}/RenewCertificate")
            assert renewed and renewed[0].outcome == "OK"
            # Past the first certificate's expiry, heartbeats are still accepted.
            await asyncio.sleep(max(0.0, first.not_valid_after_utc.timestamp() - time.time()) + 1.0)
            expired = int(first.not_valid_after_utc.timestamp() * 1e9)
            await until(lambda: _beat_after(short_core, expired), 5, "a heartbeat after the first certificate expired")
            assert not runtime.closed and await healthy(short_core)
        finally:
            await runtime.stop()
