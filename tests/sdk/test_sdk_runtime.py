"""PluginRuntime against a fake core over real TLS on loopback: registration,
serving only the core, Init and health, heartbeats, typed errors, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from vivified.communication.v1 import communication_pb2 as pb
from vivified.communication.v1 import communication_pb2_grpc as comm_grpc
from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc
from vivified.sdk import (
    ConfigurationError,
    PermissionDeniedError,
    PluginRuntime,
    PluginSettings,
)
from vivified.sdk.testing import FakeCore, LocalCA, key_usage

pytestmark = pytest.mark.asyncio

PLUGIN = "example-echo"
SPIFFE = f"spiffe://vivified.local/plugin/{PLUGIN}"


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no rich status: {err.code()} {err.details()}"
    info = error_details_pb2.ErrorInfo()
    assert status.details and status.details[0].Unpack(info)
    return info


async def until(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def message(message_id: str = "m-1") -> pb.SendMessageRequest:
    return pb.SendMessageRequest(
        message=pb.CanonicalMessage(message_id=message_id, to_address="ada@example.test", subject="Hi", content="body")
    )


async def test_registers_serves_and_is_initialised_by_the_core(fake_core: FakeCore, start_plugin: Any) -> None:
    runtime = await start_plugin()
    (registration,) = fake_core.registrations
    assert registration.manifest.id == PLUGIN and registration.join_token == fake_core.join_token
    assert registration.endpoint == runtime.endpoint
    csr = x509.load_pem_x509_csr(registration.csr_pem.encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == PLUGIN
    assert list(csr.extensions) == []  # names come from the core, never from the CSR
    assert runtime.plugin_id == PLUGIN
    assert runtime.certificate_pem == fake_core.issued[0].cert_pem

    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    assert fake_core.init_results == [True] and runtime.initialised
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        contract = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="vivified.communication.v1.CommunicationPluginService"), timeout=5
        )
        assert contract.status == health_pb2.HealthCheckResponse.SERVING
        sent = await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(message(), timeout=5)
        assert (sent.message_id, sent.status) == ("m-1", pb.DELIVERY_STATUS_DELIVERED)

    await until(lambda: len(fake_core.heartbeats) >= 2, timeout=5)
    assert set(fake_core.heartbeats) == {SPIFFE}
    assert set(fake_core.peer_serials) == {fake_core.issued[0].cert.serial_number}


async def test_health_is_not_serving_before_init(fake_core: FakeCore, tmp_path: Any, manifest_path: Any) -> None:
    async with FakeCore(fake_core.ca, call_init=False) as quiet_core:
        runtime = PluginRuntime([EchoCommunicationPlugin()], quiet_core.settings(tmp_path, manifest_path))
        await runtime.start()
        try:
            async with quiet_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                before = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
                lifecycle = lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel)
                assert (await lifecycle.Init(lifecycle_pb2.InitRequest(plugin_id=PLUGIN), timeout=5)).ready
                after = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert after.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await runtime.stop()


async def test_a_plugin_certificate_from_the_same_ca_is_refused(
    fake_core: FakeCore, ca: LocalCA, start_plugin: Any
) -> None:
    runtime = await start_plugin()
    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    other_plugin = ca.plugin_identity("other-plugin")
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN, identity=other_plugin) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(message("sneaky"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(refused.value)
        assert (info.reason, info.domain) == ("CALLER_NOT_CORE", "vivified.sdk")
        # Nor may it stop the plugin: Shutdown is refused the same way.
        with pytest.raises(grpc.aio.AioRpcError) as shutdown:
            await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
                lifecycle_pb2.ShutdownRequest(reason="x"), timeout=5
            )
        assert shutdown.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The refused call never reached the handler, and the plugin still runs.
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await comm_grpc.CommunicationPluginServiceStub(channel).GetMessageStatus(
                pb.GetMessageStatusRequest(message_id="sneaky"), timeout=5
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "broken",
    [{"is_ca": True, "key_usage": key_usage(key_cert_sign=True)}, {"key_usage": key_usage(crl_sign=True)}],
    ids=["CA:true + keyCertSign", "cRLSign"],
)
async def test_svid_rules_plugin_refuses_a_core_certificate_that_is_no_svid(
    fake_core: FakeCore, ca: LocalCA, start_plugin: Any, broken: dict[str, Any]
) -> None:
    # The core's own names and root, but a leaf that may sign certificates: the
    # handshake passes, the SDK's guard refuses it before any handler runs.
    runtime = await start_plugin()
    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    td = ca.trust_domain
    forged = ca.issue("core", uris=[f"spiffe://{td}/core"], dns_names=[f"core.{td}"], **broken)
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN, identity=forged) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(message("forged"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (error_info(refused.value).reason, error_info(refused.value).domain) == ("CALLER_NOT_CORE", "vivified.sdk")


@pytest.mark.parametrize("who", ["no client certificate", "foreign CA"])
async def test_callers_outside_the_core_ca_fail_the_handshake(
    fake_core: FakeCore, ca: LocalCA, start_plugin: Any, who: str
) -> None:
    runtime = await start_plugin()
    if who == "no client certificate":
        credentials = grpc.ssl_channel_credentials(ca.root_pem)
    else:
        foreign = LocalCA().core_identity()  # right names, wrong root
        credentials = grpc.ssl_channel_credentials(ca.root_pem, foreign.key_pem, foreign.chain_pem)
    options = [("grpc.ssl_target_name_override", f"{PLUGIN}.plugin.vivified.local")]
    async with grpc.aio.secure_channel(runtime.endpoint, credentials, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await comm_grpc.CommunicationPluginServiceStub(channel).SendMessage(message(), timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_heartbeat_refusal_surfaces_as_a_typed_error_and_beats_go_on(
    fake_core: FakeCore, start_plugin: Any
) -> None:
    runtime = await start_plugin()
    fake_core.heartbeat_refusal = (grpc.StatusCode.PERMISSION_DENIED, "PLUGIN_DISABLED")
    with pytest.raises(PermissionDeniedError) as denied:
        await runtime.heartbeat()
    error = denied.value
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PLUGIN_DISABLED",
        "vivified.registry",
    )
    assert "PLUGIN_DISABLED" in error.message
    # A disabled plugin keeps trying: once re-enabled, heartbeats are accepted again.
    await asyncio.sleep(1.5)
    fake_core.heartbeat_refusal = None
    accepted = len(fake_core.heartbeats)
    await until(lambda: len(fake_core.heartbeats) > accepted, timeout=5)
    assert not runtime.closed


@pytest.mark.parametrize(
    "refusal",
    [(grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_REVOKED"), (grpc.StatusCode.PERMISSION_DENIED, "PLUGIN_REVOKED")],
)
async def test_revocation_seen_in_a_heartbeat_stops_the_plugin(
    fake_core: FakeCore, start_plugin: Any, refusal: tuple[grpc.StatusCode, str]
) -> None:
    runtime = await start_plugin()
    fake_core.heartbeat_refusal = refusal
    await asyncio.wait_for(runtime.wait_closed(), 10)
    assert runtime.failure is None  # the operator's decision, not a crash
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        async with fake_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_core_shutdown_stops_gracefully_and_deregisters(fake_core: FakeCore, start_plugin: Any) -> None:
    hook_reasons: list[str] = []

    async def on_shutdown(reason: str) -> None:
        hook_reasons.append(reason)

    runtime = await start_plugin(on_shutdown=on_shutdown)
    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
        await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
            lifecycle_pb2.ShutdownRequest(reason="operator asked"), timeout=5
        )
    await asyncio.wait_for(runtime.wait_closed(), 10)
    assert hook_reasons == ["operator asked"]
    assert fake_core.deregistrations == [(SPIFFE, "operator asked")]
    await runtime.stop("again")  # idempotent: no second hook call, no second Deregister
    assert hook_reasons == ["operator asked"] and len(fake_core.deregistrations) == 1
    beats = len(fake_core.heartbeats)
    await asyncio.sleep(1.5)
    assert len(fake_core.heartbeats) == beats


async def test_concurrent_stops_share_one_stop(fake_core: FakeCore, start_plugin: Any) -> None:
    runtime = await start_plugin()
    await asyncio.gather(runtime.stop("a"), runtime.stop("b"), runtime.stop("c"))
    assert fake_core.deregistrations == [(SPIFFE, "a")]


async def test_on_init_runs_once_and_a_failing_hook_reports_not_ready(
    fake_core: FakeCore, start_plugin: Any, settings: PluginSettings
) -> None:
    seen: list[lifecycle_pb2.InitRequest] = []

    async def on_init(request: lifecycle_pb2.InitRequest) -> None:
        seen.append(request)

    runtime = await start_plugin(on_init=on_init)
    await asyncio.wait_for(fake_core.initialised.wait(), 15)
    async with fake_core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
        again = await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Init(
            lifecycle_pb2.InitRequest(plugin_id=PLUGIN), timeout=5
        )
    assert again.ready and [r.plugin_id for r in seen] == [PLUGIN]


async def test_a_failing_init_hook_is_not_ready(ca: LocalCA, tmp_path: Any, manifest_path: Any) -> None:
    async def broken(request: lifecycle_pb2.InitRequest) -> None:
        raise RuntimeError("database password is hunter2")

    async with FakeCore(ca) as core:
        runtime = PluginRuntime([EchoCommunicationPlugin()], core.settings(tmp_path, manifest_path), on_init=broken)
        await runtime.start()
        try:
            await asyncio.wait_for(core.initialised.wait(), 20)
            assert core.init_results == [False] and not runtime.initialised
            async with core.plugin_channel(runtime.endpoint, PLUGIN) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Init(
                        lifecycle_pb2.InitRequest(plugin_id=PLUGIN), timeout=5
                    )
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(failed.value).reason == "PLUGIN_INIT_FAILED"
            assert "hunter2" not in (failed.value.details() or "")
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await runtime.stop()


async def test_servicers_must_serve_the_declared_contracts(fake_core: FakeCore, start_plugin: Any) -> None:
    with pytest.raises(ConfigurationError, match="does not subclass a generated servicer"):
        await start_plugin(servicers=[object()])

    class HealthOnly(health_pb2_grpc.HealthServicer):
        pass

    with pytest.raises(ConfigurationError, match="CommunicationPluginService"):
        await start_plugin(servicers=[HealthOnly()])
    assert fake_core.registrations == []  # refused before the join token was spent


async def test_core_channel_and_deregister_wrappers(fake_core: FakeCore, start_plugin: Any) -> None:
    runtime = await start_plugin()
    reply = await registry_pb2_grpc.PluginRegistryServiceStub(runtime.core_channel).Heartbeat(
        registry_pb2.HeartbeatRequest(), timeout=5
    )
    assert reply.heartbeat_interval_seconds == fake_core.heartbeat_interval
    await runtime.deregister("leaving early")
    assert (SPIFFE, "leaving early") in fake_core.deregistrations
