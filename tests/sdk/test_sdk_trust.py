"""The SDK trusts only the configured core: A8 and the registration refusals."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest

from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import (
    ConfigurationError,
    CoreUntrustedError,
    PluginRuntime,
    PluginSettings,
    UnauthenticatedError,
    VivifiedSDKError,
)
from vivified.sdk.testing import FakeCore, LocalCA, key_usage

pytestmark = pytest.mark.asyncio


async def _register_with(core: FakeCore, tmp_path: Path, manifest_path: Path, **changes: Any) -> PluginRuntime:
    runtime = PluginRuntime([EchoCommunicationPlugin()], core.settings(tmp_path, manifest_path, **changes))
    try:
        await runtime.start()
    finally:
        await runtime.stop()
    return runtime


@pytest.mark.parametrize("impostor", ["foreign CA", "right CA, plugin's name"])
async def test_a8_sdk_refuses_impostor_core(ca: LocalCA, tmp_path: Path, manifest_path: Path, impostor: str) -> None:
    if impostor == "foreign CA":
        # Every name right (core.vivified.local, spiffe://vivified.local/core), wrong root.
        presented = LocalCA().core_identity()
    else:
        # Chains to the trusted root and is valid for the address dialled (127.0.0.1,
        # localhost), but it is a plugin's certificate: it lacks core.vivified.local.
        presented = ca.issue(
            "evil",
            uris=["spiffe://vivified.local/plugin/evil"],
            dns_names=["evil.plugin.vivified.local", "localhost"],
            ip_addresses=["127.0.0.1"],
        )
    async with FakeCore(ca, server_identity=presented) as impostor_core:
        with pytest.raises(CoreUntrustedError) as refused:
            await _register_with(impostor_core, tmp_path, manifest_path)
        # The impostor never received the join token, or anything else.
        assert impostor_core.registrations == []
    error = refused.value
    assert (error.reason, error.domain, error.code) == ("CORE_UNTRUSTED", "vivified.sdk", grpc.StatusCode.UNAVAILABLE)
    assert "core.vivified.local" in error.message and str(tmp_path / "core-ca.pem") in error.message
    assert impostor_core.bootstrap_address in error.message


async def test_the_genuine_core_is_accepted_under_its_pinned_name(
    ca: LocalCA, tmp_path: Path, manifest_path: Path
) -> None:
    # Control for A8: same fake core, the genuine core certificate → registration works.
    async with FakeCore(ca) as core:
        await _register_with(core, tmp_path, manifest_path)
        assert len(core.registrations) == 1


async def test_a_trust_domain_mismatch_is_refused(ca: LocalCA, tmp_path: Path, manifest_path: Path) -> None:
    async with FakeCore(ca) as core:
        with pytest.raises(CoreUntrustedError):
            await _register_with(core, tmp_path, manifest_path, trust_domain="other.example")
        assert core.registrations == []


async def test_nothing_listening_is_an_untrusted_core(ca: LocalCA, tmp_path: Path, manifest_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with FakeCore(ca) as core:
        with pytest.raises(CoreUntrustedError, match=f"127.0.0.1:{closed_port}"):
            await _register_with(core, tmp_path, manifest_path, bootstrap_address=f"127.0.0.1:{closed_port}")


async def test_a_refused_join_token_is_typed_and_leaves_nothing_listening(
    ca: LocalCA, tmp_path: Path, manifest_path: Path
) -> None:
    async with FakeCore(ca, join_token="the-right-token") as core:
        settings: PluginSettings = core.settings(tmp_path, manifest_path, join_token="a-wrong-token")
        runtime = PluginRuntime([EchoCommunicationPlugin()], settings)
        with pytest.raises(UnauthenticatedError) as refused:
            await runtime.start()
        assert (refused.value.reason, refused.value.domain) == ("JOIN_TOKEN_INVALID", "vivified.registry")
        assert runtime.closed
        host, port = runtime.endpoint.rsplit(":", 1)
        with socket.socket() as probe:
            assert probe.connect_ex((host, int(port))) != 0  # the reserved port was released, never served
        await runtime.stop()
        assert core.deregistrations == []


async def test_a_certificate_for_another_key_is_refused(ca: LocalCA, tmp_path: Path, manifest_path: Path) -> None:
    class SwappingCA(LocalCA):
        def sign_csr(self, csr_pem: bytes, plugin_id: str, **kwargs: Any) -> Any:
            return self.plugin_identity(plugin_id)  # ignores the CSR's key

    swapping = SwappingCA()
    async with FakeCore(swapping) as core:
        with pytest.raises(VivifiedSDKError) as refused:
            await _register_with(core, tmp_path, manifest_path)
    assert refused.value.reason == "ISSUED_CERTIFICATE_INVALID"
    assert "another public key" in refused.value.message


async def test_a_manifest_with_an_unknown_key_fails_before_contacting_the_core(ca: LocalCA, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("id: example-echo\nname: x\nversion: 0.1.0\ncontracts: []\ntraits: []\nsuperuser: true\n")
    async with FakeCore(ca) as core:
        runtime = PluginRuntime([EchoCommunicationPlugin()], core.settings(tmp_path, manifest))
        with pytest.raises(ConfigurationError) as refused:
            await runtime.start()
        assert runtime.closed  # wait_closed() returns at once; nothing to stop
        await asyncio.wait_for(runtime.wait_closed(), 1)
        await runtime.stop()
        assert core.registrations == []
    assert refused.value.reason == "MANIFEST_INVALID" and "superuser" in refused.value.message


def _core_leaf(ca: LocalCA, **broken: Any) -> Any:
    td = ca.trust_domain
    return ca.issue("core", uris=[f"spiffe://{td}/core"], dns_names=[f"core.{td}", "localhost"], **broken)


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ({"is_ca": True, "key_usage": key_usage(key_cert_sign=True)}, "leaf is a CA"),
        ({"key_usage": key_usage(key_cert_sign=True)}, "may sign certificates"),
        ({"key_usage": key_usage(crl_sign=True)}, "may sign certificates"),
    ],
    ids=["CA:true + keyCertSign", "keyCertSign", "cRLSign"],
)
async def test_svid_rules_sdk_refuses_a_core_leaf_that_is_no_svid(
    ca: LocalCA, tmp_path: Path, manifest_path: Path, broken: dict[str, Any], why: str
) -> None:
    # Chains to the trusted root and carries every right name (core.vivified.local,
    # spiffe://vivified.local/core): gRPC's own verification passes it. The SVID rules
    # refuse it before the join token leaves the plugin.
    async with FakeCore(ca, server_identity=_core_leaf(ca, **broken)) as impostor_core:
        with pytest.raises(CoreUntrustedError) as refused:
            await _register_with(impostor_core, tmp_path, manifest_path)
        assert impostor_core.registrations == []
    assert refused.value.reason == "CORE_UNTRUSTED"
    assert why in refused.value.message and "X.509-SVID" in refused.value.message


async def test_svid_rules_sdk_refuses_a_core_without_its_spiffe_id(
    ca: LocalCA, tmp_path: Path, manifest_path: Path
) -> None:
    td = ca.trust_domain
    nameless = ca.issue("core", uris=[f"spiffe://{td}/plugin/evil"], dns_names=[f"core.{td}", "localhost"])
    async with FakeCore(ca, server_identity=nameless) as impostor_core:
        with pytest.raises(CoreUntrustedError) as refused:
            await _register_with(impostor_core, tmp_path, manifest_path)
        assert impostor_core.registrations == []
    assert f"spiffe://{td}/core" in refused.value.message
