"""The real interceptor chain on an in-process grpc.aio server (port 0, real
mTLS, real audit log): unexpected errors, policy failures, rate limits and
stream closing."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from support.clients import error_info
from vivified.core.audit import AuditLog, CheckpointSigner, audit_table
from vivified.core.ca import CAConfig, CertificateAuthority, new_private_key
from vivified.core.chain import PluginView, RateLimitConfig, StreamTracker, TokenBuckets
from vivified.core.clock import ManualClock, SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.harness import chain_deps, serve
from vivified.core.policy import RuleIndex, load_rules
from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc

pytestmark = pytest.mark.asyncio

RULES = b"""[
 {"id": "test-init", "effect": "allow", "principal_kinds": ["plugin", "operator"],
  "methods": ["/vivified.lifecycle.v1.PluginLifecycleService/Init"]},
 {"id": "test-health", "effect": "allow", "principal_kinds": ["plugin"], "services": ["grpc.health.v1.Health"]},
 {"id": "test-shutdown-needs-trait", "effect": "allow", "principal_kinds": ["plugin"],
  "methods": ["/vivified.lifecycle.v1.PluginLifecycleService/Shutdown"], "required_traits": ["handles_phi"]}
]"""


class ExplodingLifecycle(lifecycle_pb2_grpc.PluginLifecycleServiceServicer):
    async def Init(self, request: lifecycle_pb2.InitRequest, context: Any) -> lifecycle_pb2.InitResponse:
        if request.plugin_id == "boom":
            raise RuntimeError("database password hunter2 leaked in a stack trace")
        return lifecycle_pb2.InitResponse(ready=True)

    async def Shutdown(self, request: lifecycle_pb2.ShutdownRequest, context: Any) -> lifecycle_pb2.ShutdownResponse:
        return lifecycle_pb2.ShutdownResponse()


@dataclass
class Harness:
    address: str
    engine: sa.Engine
    ca: CertificateAuthority
    views: dict[str, PluginView]
    streams: StreamTracker
    index_holder: list[Any]
    clock: ManualClock

    def channel(self, kind: str, name: str) -> grpc.aio.Channel:
        key = new_private_key()
        issued = (
            self.ca.issue_operator_certificate(name, key)
            if kind == "operator"
            else self.ca.issue_plugin_certificate(name, _csr(key, name))
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        creds = grpc.ssl_channel_credentials(self.ca.root_pem, key_pem, issued.chain_pem)
        return grpc.aio.secure_channel(
            self.address, creds, options=[("grpc.ssl_target_name_override", "core.vivified.local")]
        )

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).all())


def _csr(key: Any, name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest_asyncio.fixture
async def harness(tmp_path: pathlib.Path) -> AsyncIterator[Harness]:
    clock = ManualClock(start=dt.datetime.now(dt.UTC))
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(), SystemClock())
    engine = create_engine_for(sqlite_url(tmp_path / "db.sqlite"))
    log = AuditLog(
        engine,
        clock=SystemClock(),
        signer=CheckpointSigner.load_or_create(tmp_path / "cp.key"),
        checkpoint_path=tmp_path / "cp.jsonl",
    )
    await log.start()
    views = {"good": PluginView("active", frozenset()), "boom": PluginView("active", frozenset())}
    streams = StreamTracker()
    index_holder: list[Any] = [RuleIndex.build(load_rules(RULES))]
    deps = chain_deps(
        ca,
        log,
        lambda: index_holder[0],
        tracer=TracerProvider().get_tracer("test"),
        plugin_lookup=views.get,
        streams=streams,
        buckets=TokenBuckets(lambda: RateLimitConfig(rate_per_second=1.0, burst=5), clock),
    )
    served = await serve(
        ca,
        deps,
        [
            (ExplodingLifecycle(), lifecycle_pb2_grpc.add_PluginLifecycleServiceServicer_to_server),
            (health.aio.HealthServicer(), health_pb2_grpc.add_HealthServicer_to_server),
        ],
    )
    try:
        yield Harness(served.address, engine, ca, views, streams, index_holder, clock)
    finally:
        await served.stop()
        await log.close()
        engine.dispose()


def _init(plugin_id: str) -> lifecycle_pb2.InitRequest:
    return lifecycle_pb2.InitRequest(plugin_id=plugin_id)


async def test_unexpected_exception_is_sanitised_internal_and_audited_once(harness: Harness) -> None:
    async with harness.channel("operator", "admin") as channel:
        stub = lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Init(_init("boom"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")
    assert error_info(caught.value).reason == "INTERNAL"
    rows = harness.rows()
    assert len(rows) == 1
    assert (rows[0].actor, rows[0].outcome, rows[0].decision) == ("operator:admin", "INTERNAL", "allow")
    assert "hunter2" not in repr(tuple(rows[0]))


async def test_c2_policy_evaluation_error_denies(harness: Harness) -> None:
    class Broken:
        def candidates(self, *args: object) -> list[object]:
            raise KeyError("corrupt index")

    harness.index_holder[0] = Broken()
    async with harness.channel("operator", "admin") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Init(_init("ok"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_ERROR", "policy-error")
    rows = harness.rows()
    assert len(rows) == 1 and (rows[0].decision, rows[0].reason) == ("deny", "POLICY_ERROR")


async def test_c1_no_matching_rule_is_default_deny(harness: Harness) -> None:
    async with harness.channel("operator", "admin") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "default-deny")
    assert [(r.decision, r.rule_id) for r in harness.rows()] == [("deny", "default-deny")]


async def test_missing_trait_denies_with_the_rule_id(harness: Harness) -> None:
    async with harness.channel("plugin", "good") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
                lifecycle_pb2.ShutdownRequest(), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).metadata["rule_id"] == "test-shutdown-needs-trait"
        assert "handles_phi" in (caught.value.details() or "")
        harness.views["good"] = PluginView("active", frozenset({"handles_phi"}))
        await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Shutdown(
            lifecycle_pb2.ShutdownRequest(), timeout=5
        )
    assert [r.decision for r in harness.rows()] == ["deny", "allow"]


async def test_remembered_decisions_follow_a_rebuilt_index(harness: Harness) -> None:
    """The policy layer remembers decisions per rule index: a rebuilt index
    (a plugin approved or revoked) decides the very next call afresh."""
    async with harness.channel("operator", "admin") as channel:
        stub = lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel)
        await stub.Init(_init("ok"), timeout=5)
        await stub.Init(_init("ok"), timeout=5)
        harness.index_holder[0] = RuleIndex.build(load_rules(b"[]"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Init(_init("ok"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).metadata["rule_id"] == "default-deny"
        harness.index_holder[0] = RuleIndex.build(load_rules(RULES))
        await stub.Init(_init("ok"), timeout=5)
    assert [(r.decision, r.rule_id) for r in harness.rows()] == [
        ("allow", "test-init"),
        ("allow", "test-init"),
        ("deny", "default-deny"),
        ("allow", "test-init"),
    ]


async def test_rate_limit_per_principal(harness: Harness) -> None:
    async with harness.channel("plugin", "good") as channel, harness.channel("plugin", "boom") as other:
        stub = lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel)
        for _ in range(5):
            await stub.Init(_init("ok"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Init(_init("ok"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(caught.value).reason == "RATE_LIMITED"
        # Another principal is unaffected, and reconnecting does not reset the bucket.
        await lifecycle_pb2_grpc.PluginLifecycleServiceStub(other).Init(_init("ok"), timeout=5)
    async with harness.channel("plugin", "good") as again:
        with pytest.raises(grpc.aio.AioRpcError) as still:
            await lifecycle_pb2_grpc.PluginLifecycleServiceStub(again).Init(_init("ok"), timeout=5)
        assert still.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        harness.clock.advance(1.0)
        await lifecycle_pb2_grpc.PluginLifecycleServiceStub(again).Init(_init("ok"), timeout=5)
    limited = [r for r in harness.rows() if r.reason == "RATE_LIMITED"]
    assert len(limited) == 2 and all(r.rule_id == "rate-limit" for r in limited)


async def test_open_stream_closed_when_plugin_is_disabled(harness: Harness) -> None:
    async with harness.channel("plugin", "good") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        harness.views["good"] = PluginView("disabled", frozenset())
        assert harness.streams.close_all("good", "PLUGIN_DISABLED") == 1
        # Watch never ends by itself and the client never writes: only the gate can end it.
        # (The bound is generous: a loaded 2-core CI machine once took over 5 s here.)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), timeout=20)
        assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(ended.value).reason == "PLUGIN_DISABLED"
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert error_info(denied.value).reason == "PLUGIN_DISABLED"
    # Opened, closed by the status gate (its own deny record), the next call denied.
    rows = harness.rows()
    assert [r.outcome for r in rows] == ["STREAM_OPENED", "PERMISSION_DENIED", "PERMISSION_DENIED"]
    assert [(r.reason, r.rule_id) for r in rows[1:]] == [("PLUGIN_DISABLED", "status-gate")] * 2
