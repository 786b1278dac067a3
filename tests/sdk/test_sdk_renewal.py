"""Certificate renewal without a restart: short-lived certificates from the fake
core, renewed at half their lifetime, for both the client channel and the
certificate the plugin's server presents."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc as comm_grpc
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PluginRuntime
from vivified.sdk.testing import FakeCore, LocalCA

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

PLUGIN = "example-echo"
LIFETIME = dt.timedelta(seconds=3)


@pytest_asyncio.fixture
async def short_lived_core(ca: LocalCA) -> AsyncIterator[FakeCore]:
    async with FakeCore(ca, leaf_lifetime=LIFETIME) as core:
        yield core


@pytest_asyncio.fixture
async def runtime(short_lived_core: FakeCore, tmp_path: Path, manifest_path: Path) -> AsyncIterator[PluginRuntime]:
    settings = short_lived_core.settings(tmp_path, manifest_path, renew_at_fraction=0.5, shutdown_grace_seconds=1.0)
    plugin = PluginRuntime([EchoCommunicationPlugin()], settings)
    await plugin.start()
    yield plugin
    await plugin.stop()


async def until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def presented_certificate(endpoint: str, core: FakeCore, tmp_path: Path) -> x509.Certificate:
    """The certificate the plugin's server presents to a new TLS connection from the core."""
    chain, key = tmp_path / "core-chain.pem", tmp_path / "core-key.pem"
    chain.write_bytes(core.identity.chain_pem)
    key.write_bytes(core.identity.key_pem)
    context = ssl.create_default_context(cadata=core.ca.root_pem.decode())
    context.load_cert_chain(chain, key)
    context.set_alpn_protocols(["h2"])
    host, port = endpoint.rsplit(":", 1)
    _, writer = await asyncio.open_connection(
        host, int(port), ssl=context, server_hostname=f"{PLUGIN}.plugin.{core.ca.trust_domain}"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


async def send(channel: grpc.aio.Channel, message_id: str) -> pb.SendMessageResponse:
    request = pb.SendMessageRequest(message=pb.CanonicalMessage(message_id=message_id, to_address="a", content="b"))
    return await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(request, timeout=5)


async def test_renewal_swaps_both_certificates_without_a_restart(
    short_lived_core: FakeCore, runtime: PluginRuntime, tmp_path: Path
) -> None:
    core = short_lived_core
    first = core.issued[0].cert
    assert pem(await presented_certificate(runtime.endpoint, core, tmp_path)) == runtime.certificate_pem == pem(first)
    async with core.plugin_channel(runtime.endpoint, PLUGIN) as early:
        await send(early, "before-renewal")

        await until(lambda: runtime.renewals >= 1, timeout=10)
        assert runtime.certificate_pem != pem(first)
        # Renewal went over mTLS, authenticated with the certificate being replaced.
        assert core.renewals[0] == f"spiffe://vivified.local/plugin/{PLUGIN}"
        assert first.serial_number in core.peer_serials

        # New connections see a renewed certificate: the server was not restarted.
        presented = await presented_certificate(runtime.endpoint, core, tmp_path)
        renewed_serials = {leaf.cert.serial_number for leaf in core.issued[1:]}
        assert presented.serial_number in renewed_serials

        # Past the first certificate's expiry the plugin still works both ways.
        expiry = first.not_valid_after_utc.timestamp()
        await asyncio.sleep(max(0.0, expiry - time.time()) + 0.5)
        assert runtime.certificate_pem != pem(first)
        async with core.plugin_channel(runtime.endpoint, PLUGIN) as fresh:
            assert (await send(fresh, "after-expiry")).status == pb.DELIVERY_STATUS_DELIVERED
        assert (await send(early, "same-connection")).status == pb.DELIVERY_STATUS_DELIVERED
        beats = len(core.peer_serials)
        await until(lambda: len(core.peer_serials) > beats, timeout=5)
        assert core.peer_serials[-1] in {leaf.cert.serial_number for leaf in core.issued[1:]}
    assert not runtime.closed and runtime.failure is None


async def test_failed_renewals_are_retried(ca: LocalCA, tmp_path: Path, manifest_path: Path) -> None:
    # A longer lifetime than the other tests: room for a refused attempt and a retry before expiry.
    async with FakeCore(ca, leaf_lifetime=dt.timedelta(seconds=8)) as core:
        core.renew_refusal = (grpc.StatusCode.UNAVAILABLE, "CORE_BUSY")
        plugin = PluginRuntime(
            [EchoCommunicationPlugin()], core.settings(tmp_path, manifest_path, renew_at_fraction=0.25)
        )
        await plugin.start()
        try:
            await until(lambda: "CORE_BUSY" in core.refused, timeout=10)
            assert plugin.renewals == 0
            core.renew_refusal = None
            await until(lambda: plugin.renewals >= 1, timeout=5)
            assert not plugin.closed and len(core.renewals) == 1
        finally:
            await plugin.stop()


async def test_an_expired_certificate_stops_the_plugin_with_an_error(
    short_lived_core: FakeCore, runtime: PluginRuntime
) -> None:
    short_lived_core.renew_refusal = (grpc.StatusCode.UNAVAILABLE, "CORE_BUSY")
    await asyncio.wait_for(runtime.wait_closed(), 10)
    assert runtime.failure is not None and runtime.failure.reason == "CERTIFICATE_EXPIRED"
    assert runtime.renewals == 0


async def test_a_revoked_plugin_stops_when_renewing(short_lived_core: FakeCore, runtime: PluginRuntime) -> None:
    short_lived_core.renew_refusal = (grpc.StatusCode.PERMISSION_DENIED, "PLUGIN_REVOKED")
    await asyncio.wait_for(runtime.wait_closed(), 10)
    assert runtime.failure is None
