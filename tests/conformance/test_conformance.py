"""The plugin conformance suite (docs/plugin-protocol.md), run against every
plugin under `plugins/` through a real core process: registration with a
one-time token, Init and health, core-only serving (M2), Shutdown and
SIGTERM, certificate renewal under a short TTL with calls in flight, and a
restart after SIGKILL from the stored key and certificate with no new join
token (M3)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conformance.conftest import (
    SYNC_BOUND,
    RunningPlugin,
    core_credentials,
    healthy,
    listed,
    plugin_target,
    restart_without_token,
    start_plugin,
    wait_exit,
)
from conformance.plugins import PluginUnderTest
from support.clients import admitted_plugin, audit_rows, bootstrap_channel, error_info, new_csr, operator_channel
from support.processes import CoreProcess, core_running, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.manifest import load_manifest_file
from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

REGISTRY = "/vivified.registry.v1.PluginRegistryService"
SIGTERM_DEADLINE = 10.0


def _endpoint(plugin: admin_pb.Plugin | None) -> str:
    assert plugin is not None and plugin.endpoint
    return plugin.endpoint


async def test_registers_with_its_token_and_the_token_is_refused_again(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    registered = audit_rows(core, action=f"{REGISTRY}/Register", resource=f"plugin/{plugin_id}")
    assert [(r.decision, r.outcome) for r in registered][-1] == ("allow", "OK")
    before = len(audit_rows(core, action=f"{REGISTRY}/Register"))
    async with bootstrap_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await reg_grpc.PluginRegistryServiceStub(channel).Register(
                reg_pb.RegisterRequest(
                    manifest=load_manifest_file(plugin.spec.manifest),
                    csr_pem=new_csr(plugin_id)[0].decode(),
                    join_token=plugin.token,
                    endpoint="127.0.0.1:1",
                ),
                timeout=10,
            )
    assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(reused.value).reason == "JOIN_TOKEN_INVALID"
    rows = audit_rows(core, action=f"{REGISTRY}/Register")
    assert len(rows) == before + 1 and (rows[-1].decision, rows[-1].outcome) == ("deny", "UNAUTHENTICATED")


async def test_answers_init_and_serves_health_to_the_core(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    endpoint = _endpoint(await listed(core, plugin_id))
    async with grpc.aio.secure_channel(
        endpoint, core_credentials(core), options=plugin_target(core, plugin_id)
    ) as channel:
        reply = await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Init(
            lifecycle_pb2.InitRequest(plugin_id=plugin_id), timeout=10
        )
        assert reply.ready  # a second Init is a no-op that answers ready
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", *load_manifest_file(plugin.spec.manifest).contracts):
            checked = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)  # type: ignore[attr-defined]
            assert checked.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_m2_refuses_every_caller_but_the_core(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    endpoint = _endpoint(await listed(core, plugin_id))
    other = await admitted_plugin(core, "conformance-intruder")
    operator = core.operator_dir
    callers = {
        "another plugin's valid certificate": grpc.ssl_channel_credentials(core.ca_pem, other.key_pem, other.chain_pem),
        "an operator certificate": grpc.ssl_channel_credentials(
            core.ca_pem, (operator / "operator.key").read_bytes(), (operator / "operator.crt").read_bytes()
        ),
    }
    probe = f"/{plugin.spec.probe}"
    for who, credentials in callers.items():
        async with grpc.aio.secure_channel(endpoint, credentials, options=plugin_target(core, plugin_id)) as channel:
            for call in (
                channel.unary_unary(probe)(b"", timeout=10),  # an empty request: valid for any message type
                lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
                    lifecycle_pb2.ShutdownRequest(reason="x"), timeout=10
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, who
                info = error_info(refused.value)
                assert (info.reason, info.domain) == ("CALLER_NOT_CORE", "vivified.sdk"), who
    no_certificate = grpc.ssl_channel_credentials(core.ca_pem)
    async with grpc.aio.secure_channel(endpoint, no_certificate, options=plugin_target(core, plugin_id)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(probe)(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake requires a client certificate
    assert plugin.process.poll() is None  # type: ignore[attr-defined]
    # The refused Shutdown did not stop it, and the core still routes to it.
    assert (await listed(core, plugin_id)).health == admin_pb.PLUGIN_HEALTH_HEALTHY  # type: ignore[union-attr]


async def test_shutdown_from_the_core_stops_it_cleanly(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    endpoint = _endpoint(await listed(core, plugin_id))
    async with grpc.aio.secure_channel(
        endpoint, core_credentials(core), options=plugin_target(core, plugin_id)
    ) as channel:
        await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
            lifecycle_pb2.ShutdownRequest(reason="conformance"), timeout=10
        )
    assert await wait_exit(plugin.process, SIGTERM_DEADLINE) == 0, plugin.log()
    deregistered = audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/Deregister")
    assert [(r.decision, r.outcome) for r in deregistered][-1:] == [("allow", "OK")]


async def test_exits_cleanly_on_sigterm_within_the_deadline(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    before = len(audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/Deregister"))
    started = time.monotonic()
    os.kill(plugin.process.pid, signal.SIGTERM)  # type: ignore[attr-defined]
    assert await wait_exit(plugin.process, SIGTERM_DEADLINE) == 0, plugin.log()
    assert time.monotonic() - started < SIGTERM_DEADLINE
    rows = audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/Deregister")
    assert len(rows) == before + 1 and (rows[-1].decision, rows[-1].outcome) == ("allow", "OK")
    assert (await listed(core, plugin_id)).status == admin_pb.PLUGIN_STATUS_REVOKED  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def short_ttl_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("conformance-ttl") / "data"
    with core_running(data_dir, *SYNC_BOUND, "--heartbeat-interval", "1", "--leaf-ttl", "10") as core:
        yield core


async def test_m3_renews_its_certificate_under_a_short_ttl_with_no_failed_call(
    short_ttl_core: CoreProcess, under_test: PluginUnderTest, tmp_path: pathlib.Path
) -> None:
    core = short_ttl_core
    running = await start_plugin(core, under_test, tmp_path)
    plugin_id = under_test.plugin_id
    try:
        probe = under_test.probe
        caller = await admitted_plugin(core, "conformance-caller", calls=[{"plugin_id": plugin_id, "method": probe}])
        renewals = lambda: audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/RenewCertificate")  # noqa: E731
        before = len(renewals())
        credentials = grpc.ssl_channel_credentials(core.ca_pem, caller.key_pem, caller.chain_pem)
        answers: list[str] = []
        deadline = time.monotonic() + 15.0  # two renewals of a 10 s certificate (due at 2/3 of it)
        async with grpc.aio.secure_channel(
            core.listen_address, credentials, options=[("grpc.ssl_target_name_override", f"core.{core.trust_domain}")]
        ) as channel:
            call = channel.unary_unary(f"/{probe}")
            while time.monotonic() < deadline:
                try:
                    await call(b"", metadata=(("x-vivified-target", plugin_id),), timeout=5)
                    answers.append("OK")
                except grpc.aio.AioRpcError as err:
                    answers.append(f"{err.code().name}/{error_info(err).reason}")
                await asyncio.sleep(0.02)
        # The plugin's own answer to an empty request, the same every time; a core refusal
        # (the target unavailable or refusing the core during renewal) is a failed call.
        assert len(set(answers)) == 1, sorted(set(answers))
        assert not answers[0].startswith(("UNAVAILABLE", "PERMISSION_DENIED/POLICY")), answers[0]
        assert len(answers) > 50
        renewed = renewals()[before:]
        assert len(renewed) >= 2 and all(r.decision == "allow" and r.outcome == "OK" for r in renewed), running.log()
        assert running.process.poll() is None  # type: ignore[attr-defined]
    finally:
        stop_process(running.process)  # type: ignore[arg-type]


async def test_m3_restarts_after_sigkill_from_its_stored_certificate_without_a_new_token(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    probe = plugin.spec.probe
    caller = await admitted_plugin(
        core, "conformance-restart-caller", calls=[{"plugin_id": plugin_id, "method": probe}]
    )
    credentials = grpc.ssl_channel_credentials(core.ca_pem, caller.key_pem, caller.chain_pem)
    options = [("grpc.ssl_target_name_override", f"core.{core.trust_domain}")]

    async def answer() -> str:
        async with grpc.aio.secure_channel(core.listen_address, credentials, options=options) as channel:
            try:
                await channel.unary_unary(f"/{probe}")(b"", metadata=(("x-vivified-target", plugin_id),), timeout=10)
            except grpc.aio.AioRpcError as err:
                return f"{err.code().name}/{error_info(err).reason}"
        return "OK"

    before = await answer()
    assert not before.startswith(("UNAVAILABLE", "PERMISSION_DENIED/POLICY")), before
    registrations = len(audit_rows(core, action=f"{REGISTRY}/Register", resource=f"plugin/{plugin_id}"))
    resumes = lambda: audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/Resume")  # noqa: E731
    resumed_before = len(resumes())
    os.kill(plugin.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    assert await wait_exit(plugin.process, 10) is not None
    restarted = restart_without_token(plugin)
    try:
        await until(lambda: len(resumes()) > resumed_before, 30, f"{plugin_id} to resume:\n{restarted.log()}")
        await until(lambda: healthy(core, plugin_id), 30, f"{plugin_id} to pass Init again:\n{restarted.log()}")
        rows = resumes()[resumed_before:]
        assert [(r.decision, r.outcome) for r in rows] == [("allow", "OK")], restarted.log()
        assert len(audit_rows(core, action=f"{REGISTRY}/Register", resource=f"plugin/{plugin_id}")) == registrations
        assert await answer() == before  # served through the core again, by the restarted process
        assert restarted.process.poll() is None  # type: ignore[attr-defined]
    finally:
        stop_process(restarted.process)  # type: ignore[arg-type]


async def test_m3_a_revoked_plugin_restarted_without_a_token_is_refused_and_exits(plugin: RunningPlugin) -> None:
    core, plugin_id = plugin.core, plugin.spec.plugin_id
    os.kill(plugin.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    assert await wait_exit(plugin.process, 10) is not None
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).RevokePlugin(
            admin_pb.RevokePluginRequest(plugin_id=plugin_id, reason="conformance"), timeout=10
        )
    resumes = lambda: audit_rows(core, actor=f"plugin:{plugin_id}", action=f"{REGISTRY}/Resume")  # noqa: E731
    before = len(resumes())
    restarted = restart_without_token(plugin)
    try:
        code = await wait_exit(restarted.process, 30)
        assert code not in (None, 0), restarted.log()
    finally:
        stop_process(restarted.process)  # type: ignore[arg-type]
    rows = resumes()[before:]
    assert [(r.decision, r.outcome, r.reason) for r in rows] == [("deny", "UNAUTHENTICATED", "CERTIFICATE_REVOKED")]
    assert "CERTIFICATE_REVOKED" in restarted.log()
    data_dir = pathlib.Path(plugin.env["VIVIFIED_DATA_DIR"])
    assert not (data_dir / "vivified-identity.json").exists()  # refused for good: the stored identity is gone
    assert (await listed(core, plugin_id)).status == admin_pb.PLUGIN_STATUS_REVOKED  # type: ignore[union-attr]
