"""Approve → register → certificate → calls → disable → enable → revoke, on a
real core process over real mTLS, with the audit log checked."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from support.clients import (
    PluginIdentity,
    admitted_plugin,
    audit_rows,
    error_info,
    new_csr,
    operator_channel,
    plugin_channel,
)
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

HEARTBEAT = "/vivified.registry.v1.PluginRegistryService/Heartbeat"


async def test_issued_certificate_follows_core_policy(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "cert-policy")
    leaf = identity.leaf
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://vivified.local/plugin/cert-policy"]
    assert san.get_values_for_type(x509.DNSName) == ["cert-policy.plugin.vivified.local"]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(minutes=10) <= lifetime <= dt.timedelta(minutes=16)  # --leaf-ttl 600 + backdating
    assert identity.response.spiffe_id == "spiffe://vivified.local/plugin/cert-policy"
    assert identity.response.heartbeat_interval_seconds == 1


async def test_disable_enable_revoke_lifecycle(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "lifecycle")
    async with plugin_channel(core, identity) as channel, operator_channel(core) as op:
        registry = reg_grpc.PluginRegistryServiceStub(channel)
        admin = admin_grpc.PluginAdminServiceStub(op)
        reply = await registry.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
        assert reply.heartbeat_interval_seconds == 1
        # An accepted heartbeat is counted, not audited (liveness is audited as transitions).
        assert audit_rows(core, actor="plugin:lifecycle", action=HEARTBEAT) == []

        await admin.DisablePlugin(admin_pb.DisablePluginRequest(plugin_id="lifecycle", reason="test"), timeout=5)
        before = len(audit_rows(core, actor="plugin:lifecycle"))
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await registry.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(denied.value)
        assert info.reason == "PLUGIN_DISABLED" and info.domain == "vivified.registry"
        assert info.metadata["rule_id"] == "status-gate"
        rows = audit_rows(core, actor="plugin:lifecycle")
        assert len(rows) == before + 1
        assert (rows[-1].decision, rows[-1].reason, rows[-1].rule_id, rows[-1].outcome) == (
            "deny",
            "PLUGIN_DISABLED",
            "status-gate",
            "PERMISSION_DENIED",
        )

        await admin.EnablePlugin(admin_pb.EnablePluginRequest(plugin_id="lifecycle"), timeout=5)
        await registry.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)

        await admin.RevokePlugin(admin_pb.RevokePluginRequest(plugin_id="lifecycle"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as revoked:
            await registry.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
        assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(revoked.value).reason == "CERTIFICATE_REVOKED"
        listed = await admin.ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
        status = {p.plugin_id: p.status for p in listed.plugins}
        assert status["lifecycle"] == admin_pb.PLUGIN_STATUS_REVOKED
        with pytest.raises(grpc.aio.AioRpcError) as no_enable:
            await admin.EnablePlugin(admin_pb.EnablePluginRequest(plugin_id="lifecycle"), timeout=5)
        assert no_enable.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_renewal_over_mtls_then_deregister(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "renewer")
    async with plugin_channel(core, identity) as channel:
        csr_pem, key_pem = new_csr("renewer")
        renewed = await reg_grpc.PluginRegistryServiceStub(channel).RenewCertificate(
            reg_pb.RenewCertificateRequest(csr_pem=csr_pem.decode()), timeout=5
        )
    fresh = PluginIdentity("renewer", renewed.certificate_chain_pem.encode(), key_pem, identity.response)
    assert fresh.leaf.serial_number != identity.leaf.serial_number
    san = fresh.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://vivified.local/plugin/renewer"]
    # Both certificates work during the overlap; deregistering ends every one of them.
    async with plugin_channel(core, identity) as old, plugin_channel(core, fresh) as new:
        await reg_grpc.PluginRegistryServiceStub(old).Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
        new_stub = reg_grpc.PluginRegistryServiceStub(new)
        await new_stub.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
        await new_stub.Deregister(reg_pb.DeregisterRequest(reason="test over"), timeout=5)
        for stub in (reg_grpc.PluginRegistryServiceStub(old), new_stub):
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.Heartbeat(reg_pb.HeartbeatRequest(), timeout=5)
            assert gone.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_info(gone.value).reason == "CERTIFICATE_REVOKED"
    rows = audit_rows(core, actor="plugin:renewer")
    # The two accepted heartbeats are not audited; the two refused ones are, each.
    assert [r.action.rsplit("/", 1)[1] for r in rows] == ["RenewCertificate", "Deregister", "Heartbeat", "Heartbeat"]
    assert [r.reason for r in rows[-2:]] == ["CERTIFICATE_REVOKED", "CERTIFICATE_REVOKED"]
