"""Two real core replicas on one real PostgreSQL, one shared CA (`--ca-files`):
the registry is one state. A plugin registered through A is served by B; a
plugin revoked or disabled through A is refused by B within the documented
bound (`--registry-sync-bound`, measured over 20 changes each), with the same
reasons and one audit record per refusal; an open stream on B is closed by a
revoke on A (catalogue A5); a replica cut off from PostgreSQL fails closed.

The measured propagation times are printed (run with `-s` to see them)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import pathlib
import signal
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace as dataclasses_replace

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509

from support.clients import (
    admitted_plugin,
    approve,
    error_info,
    manifest_message,
    operator_channel,
    plugin_channel,
    target_override,
)
from support.events import EMAIL_SENT, Inbox
from support.lane import RETRIEVE_METHOD, RecordingStore, plugin_settings, write_manifest
from support.postgres_server import APP_ROLE, PostgresServer
from support.processes import CoreProcess, core_running, run_vivified
from support.proxy_thread import ProxyThread
from support.raw_plugin import initialised_plugin
from support.redis_server import redis_running
from support.tcp_balancer import TcpBalancer
from support.tcp_proxy import TcpProxy
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.config.v1 import config_pb2 as config_pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.core.ca import CAConfig, CertificateAuthority
from vivified.core.clock import SystemClock
from vivified.events.v1.canonical_pb2 import EmailSent
from vivified.lifecycle.v1 import lifecycle_pb2
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc
from vivified.sdk import PluginRuntime, PluginSettings, load_manifest
from vivified.sdk import _lifecycle as sdk_lifecycle
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

BOUND = 1.0
"""--registry-sync-bound of the replicas here: the documented propagation bound."""
SAMPLES = 20


@dataclass
class Replicas:
    a: CoreProcess
    b: CoreProcess
    owner_url: str

    def audit(self, **where: str) -> list[sa.Row[object]]:
        engine = sa.create_engine(self.owner_url)
        try:
            table = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
            query = sa.select(table).order_by(table.c.seq)
            for column, value in where.items():
                query = query.where(table.c[column] == value)
            with engine.connect() as conn:
                return list(conn.execute(query).all())
        finally:
            engine.dispose()


def _shared_ca(directory: pathlib.Path) -> tuple[str, ...]:
    CertificateAuthority.load_or_create(directory, CAConfig(trust_domain="vivified.local"), SystemClock())
    return ("--ca-files", *(str(directory / name) for name in ("root.crt", "issuing.crt", "issuing.key")))


def _migrate(postgres: PostgresServer, database: str) -> None:
    done = run_vivified("db", "upgrade", "--database-url", postgres.url(database), "--app-role", APP_ROLE)
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def _replicas(
    tmp_path: pathlib.Path,
    postgres: PostgresServer,
    database: str,
    *,
    b_database_url: str | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[Replicas]:
    _migrate(postgres, database)
    url = postgres.url(database, app_role=True)
    common = (
        *_shared_ca(tmp_path / "ca"),
        "--audit-writers",
        "shared",
        "--heartbeat-interval",
        "1",
        "--registry-sync-bound",
        str(BOUND),
        "--settings-refresh",
        "1",
        *extra,
    )
    with (
        core_running(tmp_path / "a", "--database-url", url, *common) as a,
        core_running(tmp_path / "b", "--database-url", b_database_url or url, *common) as b,
    ):
        yield Replicas(a, b, postgres.url(database))


async def _heartbeat(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError | None:
    try:
        await registry_pb2_grpc.PluginRegistryServiceStub(channel).Heartbeat(registry_pb2.HeartbeatRequest(), timeout=5)
    except grpc.aio.AioRpcError as err:
        return err
    return None


async def _refused_within(
    channel: grpc.aio.Channel, started: float, limit: float
) -> tuple[float, grpc.aio.AioRpcError]:
    """Heartbeat until refused; returns (seconds since `started`, the refusal)."""
    while (err := await _heartbeat(channel)) is None:
        assert time.monotonic() - started < limit, "the change did not reach the other replica"
    return time.monotonic() - started, err


async def _admin(core: CoreProcess, method: str, request: object) -> object:
    async with operator_channel(core) as channel:
        return await getattr(admin_grpc.PluginAdminServiceStub(channel), method)(request, timeout=10)


def _report(what: str, times: list[float]) -> None:
    print(
        f"\n{what} propagation A -> B over {len(times)}: median {statistics.median(times) * 1000:.1f} ms, "
        f"max {max(times) * 1000:.1f} ms"
    )


async def test_registered_through_a_is_served_by_b_within_the_bound(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        times = []
        for n in range(SAMPLES):
            plugin = await admitted_plugin(r.a, f"joined-{n}")  # approved and registered through A
            registered = time.monotonic()
            async with plugin_channel(r.b, plugin) as channel:
                while (err := await _heartbeat(channel)) is not None:
                    assert error_info(err).reason == "PLUGIN_UNKNOWN", err
                    assert time.monotonic() - registered < BOUND, "B did not learn the registration in time"
                times.append(time.monotonic() - registered)
        _report("registration", times)
        assert max(times) <= BOUND
        # B answers for the plugin as A does: listed active on both.
        for core in (r.a, r.b):
            listed = await _admin(core, "ListPlugins", admin_pb.ListPluginsRequest())
            statuses = {p.plugin_id: p.status for p in listed.plugins}  # type: ignore[attr-defined]
            assert statuses["joined-0"] == admin_pb.PLUGIN_STATUS_ACTIVE


async def test_a5_revoked_through_a_is_refused_by_b_within_the_bound_and_audited_once(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        times = []
        for n in range(SAMPLES):
            plugin = await admitted_plugin(r.a, f"revoked-{n}")
            async with plugin_channel(r.b, plugin) as channel:
                await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
                await _admin(r.a, "RevokePlugin", admin_pb.RevokePluginRequest(plugin_id=plugin.plugin_id))
                took, err = await _refused_within(channel, time.monotonic(), BOUND + 1)
                times.append(took)
                # The same reason on B as on A: the revoked certificate.
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_info(err).reason == "CERTIFICATE_REVOKED"
            async with plugin_channel(r.a, plugin) as channel:
                err_a = await _heartbeat(channel)
                assert err_a is not None and error_info(err_a).reason == "CERTIFICATE_REVOKED"
            refusals = r.audit(actor=f"plugin:{plugin.plugin_id}", reason="CERTIFICATE_REVOKED")
            assert len(refusals) == 2 and {x.decision for x in refusals} == {"deny"}  # one on B, one on A
        _report("revoke", times)
        assert max(times) <= BOUND
        revokes = r.audit(action="/vivified.admin.v1.PluginAdminService/RevokePlugin")
        assert len(revokes) == SAMPLES and {x.actor for x in revokes} == {"operator:admin"}


async def _served(channel: grpc.aio.Channel) -> bool:
    return await _heartbeat(channel) is None


async def test_disabled_through_a_is_refused_by_b_within_the_bound_and_enabled_again(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        plugin = await admitted_plugin(r.a, "switched")
        times = []
        refused_while_enabling = 0
        async with plugin_channel(r.b, plugin) as channel:
            await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
            for _ in range(SAMPLES):
                await _admin(r.a, "DisablePlugin", admin_pb.DisablePluginRequest(plugin_id="switched"))
                took, err = await _refused_within(channel, time.monotonic(), BOUND + 1)
                times.append(took)
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED
                info = error_info(err)
                assert (info.reason, info.metadata["rule_id"]) == ("PLUGIN_DISABLED", "status-gate")
                await _admin(r.a, "EnablePlugin", admin_pb.EnablePluginRequest(plugin_id="switched"))
                enabled = time.monotonic()
                while (err := await _heartbeat(channel)) is not None:
                    assert error_info(err).reason == "PLUGIN_DISABLED"
                    assert time.monotonic() - enabled < BOUND, "B did not learn the enable in time"
                    refused_while_enabling += 1
        _report("disable", times)
        assert max(times) <= BOUND
        refusals = r.audit(actor="plugin:switched", reason="PLUGIN_DISABLED")
        assert len(refusals) == SAMPLES + refused_while_enabling  # exactly one record per refused call


async def _watch_first(stub: config_grpc.ConfigServiceStub) -> grpc.aio.UnaryStreamCall:  # type: ignore[type-arg]
    call = stub.WatchMyConfig(config_pb.WatchMyConfigRequest())
    first = await call.read()
    assert isinstance(first, config_pb.WatchMyConfigResponse)
    return call


async def test_a5_open_streams_on_b_are_closed_by_a_revoke_on_a(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        plugin = await admitted_plugin(r.a, "watcher")
        async with plugin_channel(r.b, plugin) as channel:
            await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
            stub = config_grpc.ConfigServiceStub(channel)
            streams = [await _watch_first(stub) for _ in range(3)]
            await _admin(r.a, "RevokePlugin", admin_pb.RevokePluginRequest(plugin_id="watcher"))
            revoked = time.monotonic()
            for stream in streams:
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(stream.read(), BOUND + 1)
                assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert error_info(ended.value).reason == "PLUGIN_REVOKED"
            closed_after = time.monotonic() - revoked
            assert closed_after <= BOUND, f"streams on B closed {closed_after:.2f}s after the revoke"
            # A new stream on B is refused outright, like any call.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _watch_first(stub)
            assert error_info(refused.value).reason == "CERTIFICATE_REVOKED"
        opened = r.audit(actor="plugin:watcher", action="/vivified.config.v1.ConfigService/WatchMyConfig")
        # Each stream: its opening and its closure by the revoke (one deny record
        # each, written by B); then the refused new stream.
        assert sorted((x.outcome, x.reason) for x in opened) == sorted(
            [("STREAM_OPENED", "")] * 3
            + [("PERMISSION_DENIED", "PLUGIN_REVOKED")] * 3
            + [("UNAUTHENTICATED", "CERTIFICATE_REVOKED")]
        )
        revokes = r.audit(action="/vivified.admin.v1.PluginAdminService/RevokePlugin", resource="plugin/watcher")
        assert len(revokes) == 1 and revokes[0].outcome == "OK"


async def test_setting_overrides_through_a_apply_on_b(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        async with operator_channel(r.a) as channel:
            await config_grpc.ConfigServiceStub(channel).SetCoreSetting(
                config_pb.SetCoreSettingRequest(key="event_max_attempts", value="7", reason="shared"), timeout=10
            )
        stored = time.monotonic()

        async def on_b() -> bool:
            async with operator_channel(r.b) as channel:
                listed = await config_grpc.ConfigServiceStub(channel).ListCoreSettings(
                    config_pb.ListCoreSettingsRequest(), timeout=10
                )
            return any(s.key == "event_max_attempts" and s.effective_value == "7" for s in listed.settings)

        await until(on_b, 1 + 1.5, "B applying the override stored through A")  # --settings-refresh 1 + a read
        assert time.monotonic() - stored <= 2.5


async def test_a_replica_cut_off_from_postgres_fails_closed_and_says_why(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with ProxyThread(TcpProxy("127.0.0.1", postgres.port)) as proxy:
        b_url = postgres.url(postgres_database, app_role=True).replace(f":{postgres.port}/", f":{proxy.port}/")
        with _replicas(tmp_path, postgres, postgres_database, b_database_url=b_url) as r:
            plugin = await admitted_plugin(r.a, "isolated")
            async with plugin_channel(r.b, plugin) as on_b, plugin_channel(r.a, plugin) as on_a:
                await until(lambda: _served(on_b), BOUND + 1, "B serving the plugin")
                stream = await _watch_first(config_grpc.ConfigServiceStub(on_b))
                proxy.blackhole()  # B can no longer read (or write) the database
                cut = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(stream.read(), BOUND + 2)
                # Past the bound B stops trusting its view: open streams end...
                assert error_info(ended.value).reason == "REGISTRY_STALE"
                assert BOUND <= time.monotonic() - cut <= BOUND + 1
                await until(lambda: "REGISTRY_STALE" in r.b.log(), 5, "B saying why it refuses")
                assert "refusing plugin calls until the registry can be read" in r.b.log()
                # ...and a call is refused (its audit record is written once the database is back).
                pending = asyncio.ensure_future(_heartbeat(on_b))
                await asyncio.sleep(0.5)
                assert await _heartbeat(on_a) is None  # A, still connected, keeps serving
                proxy.heal()
                err = await pending
                assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
                assert error_info(err).reason == "REGISTRY_STALE"
                healed, refused_after_heal = time.monotonic(), 0
                while (err := await _heartbeat(on_b)) is not None:  # until B has read the registry again
                    assert error_info(err).reason == "REGISTRY_STALE"
                    assert time.monotonic() - healed < BOUND + 10, "B did not recover"
                    refused_after_heal += 1
            stale = r.audit(actor="plugin:isolated", reason="REGISTRY_STALE")
            # One record per refused call, and one for the stream cut off (written late,
            # once the database answered again: B did not wait for it to end the stream).
            assert len(stale) == 1 + 1 + refused_after_heal
            assert {(x.outcome, x.rule_id) for x in stale} == {("UNAVAILABLE", "status-gate")}


async def test_operator_certificate_revoked_through_a_is_refused_by_b(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        b_serial = format(
            x509.load_pem_x509_certificate((r.b.operator_dir / "operator.crt").read_bytes()).serial_number, "x"
        )
        listed = run_vivified("operators", "--data-dir", str(r.a.data_dir), "list", "--json")
        assert listed.returncode == 0, listed.stderr
        recorded = json.loads(listed.stdout)["certificates"]
        assert b_serial in {c["serial"] for c in recorded}  # each replica's local operator, recorded on issue
        assert all(c["name"] == "admin" and "revoke_time" not in c for c in recorded)
        expiry = dt.datetime.fromisoformat(next(c for c in recorded if c["serial"] == b_serial)["expire_time"])
        assert expiry - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)  # the shortened default lifetime

        async def operator_call(core: CoreProcess, operator: CoreProcess) -> grpc.aio.AioRpcError | None:
            """ListPlugins on `core` with the operator certificate of `operator`'s data dir."""
            d = operator.operator_dir
            creds = grpc.ssl_channel_credentials(
                (d / "ca.crt").read_bytes(), (d / "operator.key").read_bytes(), (d / "operator.crt").read_bytes()
            )
            try:
                async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as ch:
                    await admin_grpc.PluginAdminServiceStub(ch).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
            except grpc.aio.AioRpcError as err:
                return err
            return None

        assert await operator_call(r.b, r.b) is None and await operator_call(r.a, r.b) is None
        revoked = run_vivified(
            "operators", "--data-dir", str(r.a.data_dir), "revoke", b_serial, "--reason", "laptop lost"
        )
        assert revoked.returncode == 0, revoked.stderr
        assert b_serial in revoked.stdout and "Z" in revoked.stdout.splitlines()[1].split()[-1]
        started = time.monotonic()
        while (err := await operator_call(r.b, r.b)) is None:  # B's operator, calling B
            assert time.monotonic() - started < BOUND, "B still accepts the revoked operator certificate"
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "CERTIFICATE_REVOKED"
        on_a = await operator_call(r.a, r.b)  # ...and A (the CA is shared, so is the revocation)
        assert on_a is not None and error_info(on_a).reason == "CERTIFICATE_REVOKED"
        # A's own operator certificate is another one: still accepted.
        assert await operator_call(r.a, r.a) is None
        audited = r.audit(action="/vivified.admin.v1.PluginAdminService/RevokeOperatorCertificate")
        assert [(x.actor, x.outcome) for x in audited] == [("operator:admin", "OK")]
        refused = r.audit(reason="CERTIFICATE_REVOKED", actor="operator:admin")
        assert len(refused) == 2  # exactly one record per refused call
        relisted = json.loads(run_vivified("operators", "--data-dir", str(r.a.data_dir), "list", "--json").stdout)
        assert [c["serial"] for c in relisted["certificates"] if "revoke_time" in c] == [b_serial]
        unknown = run_vivified("operators", "--data-dir", str(r.a.data_dir), "revoke", "abc123")
        assert unknown.returncode != 0 and "CERTIFICATE_NOT_FOUND" in unknown.stderr


async def test_liveness_is_shared_and_audited_as_transitions_made_by_one_replica(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:

        def transitions() -> list[tuple[str, str]]:
            return [(x.action, (x.detail or "")) for x in r.audit(resource="plugin/beating", actor="core:core")]

        # Registered through A, which sends Init; the plugin answers it.
        async with initialised_plugin(r.a, "beating") as (plugin, _lifecycle), plugin_channel(r.b, plugin) as on_b:
            await until(lambda: [a for a, _ in transitions()] == ["plugin.healthy"], 30, "Init answered on A")
            for _ in range(5):  # heartbeats reach B only
                assert await _heartbeat(on_b) is None
                await asyncio.sleep(0.5)
            # B's heartbeats count on A too: healthy on both, and A's sweep leaves it so.
            for core in (r.a, r.b):
                listed = await _admin(core, "ListPlugins", admin_pb.ListPluginsRequest())
                health = {p.plugin_id: p.health for p in listed.plugins}  # type: ignore[attr-defined]
                assert health["beating"] == admin_pb.PLUGIN_HEALTH_HEALTHY, core.data_dir
            assert [a for a, _ in transitions()] == ["plugin.healthy"]
            await until(lambda: len(transitions()) == 2, 10, "the missed heartbeats noticed")  # 3 x 1 s silent
            await asyncio.sleep(1.5)  # both replicas sweep every 0.5 s: still one record
            assert transitions()[1][0] == "plugin.unhealthy" and "missed 3 heartbeats" in transitions()[1][1]
            assert await _heartbeat(on_b) is None
            await until(lambda: len(transitions()) == 3, 5, "the recovery")
            assert transitions()[2][0] == "plugin.recovered"
            # Accepted heartbeats are counted, not audited; a refused one is audited.
            assert r.audit(actor="plugin:beating", action="/vivified.registry.v1.PluginRegistryService/Heartbeat") == []
            await _admin(r.a, "DisablePlugin", admin_pb.DisablePluginRequest(plugin_id="beating"))
            accepted, disabled = 6, time.monotonic()
            while (err := await _heartbeat(on_b)) is None:  # until B applies the disable
                assert time.monotonic() - disabled < BOUND
                accepted += 1
            assert error_info(err).reason == "PLUGIN_DISABLED"
        refused = r.audit(actor="plugin:beating", action="/vivified.registry.v1.PluginRegistryService/Heartbeat")
        assert [(x.decision, x.reason) for x in refused] == [("deny", "PLUGIN_DISABLED")]
        with urllib.request.urlopen(f"http://{r.b.metrics_address}/metrics", timeout=10) as response:
            scraped = response.read().decode()
        assert f'vivified_plugin_heartbeats_total{{plugin="beating"}} {accepted}.0' in scraped


async def test_config_changed_through_a_reaches_a_watch_stream_on_b_within_the_bound(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    schema = [{"name": "relay_port", "type": "CONFIG_FIELD_TYPE_INT", "default_value": "25"}]
    with _replicas(tmp_path, postgres, postgres_database) as r:
        plugin = await admitted_plugin(r.a, "configured", config=schema)
        async with plugin_channel(r.b, plugin) as channel, operator_channel(r.a) as admin_a:
            await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
            watch = config_grpc.ConfigServiceStub(channel).WatchMyConfig(config_pb.WatchMyConfigRequest())
            first = await watch.read()
            assert isinstance(first, config_pb.WatchMyConfigResponse)
            assert [(v.key, v.value) for v in first.config.values] == [("relay_port", "25")]
            times = []
            for n in range(SAMPLES):
                await config_grpc.ConfigServiceStub(admin_a).SetPluginConfigValue(
                    config_pb.SetPluginConfigValueRequest(
                        plugin_id="configured", key="relay_port", value=str(1000 + n), reason="moved"
                    ),
                    timeout=10,
                )
                changed = time.monotonic()
                seen = await asyncio.wait_for(watch.read(), BOUND + 1)  # the stream on B, told of A's change
                times.append(time.monotonic() - changed)
                assert isinstance(seen, config_pb.WatchMyConfigResponse)
                assert [(v.key, v.value) for v in seen.config.values] == [("relay_port", str(1000 + n))]
            _report("config (WatchMyConfig)", times)
            assert max(times) <= BOUND
            watch.cancel()
        sets = r.audit(action="/vivified.config.v1.ConfigService/SetPluginConfigValue", resource="plugin/configured")
        assert len(sets) == SAMPLES and {x.outcome for x in sets} == {"OK"}


@dataclass
class InitsSeen:
    """Init calls as the plugin received them: when each arrived, and how many completed."""

    arrived: list[float]
    completed: int = 0


def _count_inits(monkeypatch: pytest.MonkeyPatch, gate: asyncio.Event | None = None) -> InitsSeen:
    """Wrap the SDK's Init handler so the test sees every Init on the wire (the
    SDK answers a repeated Init without running the plugin's hook again);
    with `gate`, each Init waits for it before the SDK handles it."""
    seen = InitsSeen([])
    original = sdk_lifecycle.LifecycleServicer.Init

    async def init(
        self: sdk_lifecycle.LifecycleServicer, request: lifecycle_pb2.InitRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.InitResponse:  # type: ignore[type-arg]
        seen.arrived.append(time.monotonic())
        if gate is not None:
            await gate.wait()
        reply = await original(self, request, context)
        seen.completed += 1
        return reply

    monkeypatch.setattr(sdk_lifecycle.LifecycleServicer, "Init", init)
    return seen


async def _sdk_plugin(core: CoreProcess, tmp_path: pathlib.Path, plugin_id: str) -> PluginRuntime:
    manifest_path = write_manifest(tmp_path, plugin_id)
    approval = await approve(core, load_manifest(manifest_path), replace=True)
    runtime = PluginRuntime([RecordingStore()], plugin_settings(core, manifest_path, approval.join_token))
    await runtime.start()
    return runtime


def _health(r: Replicas, plugin_id: str) -> list[tuple[str, str]]:
    return [
        (x.action, json.loads(x.detail or "{}").get("why", "") if (x.detail or "").startswith("{") else "")
        for x in r.audit(resource=f"plugin/{plugin_id}", actor="core:core")
    ]


async def test_two_replicas_send_a_plugin_exactly_one_init(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inits = _count_inits(monkeypatch)
    with _replicas(tmp_path, postgres, postgres_database) as r:
        runtime = await _sdk_plugin(r.a, tmp_path, "init-once")
        try:
            await until(lambda: _listed_health(r.b, "init-once", admin_pb.PLUGIN_HEALTH_HEALTHY), 15, "healthy on B")
            await asyncio.sleep(4)  # past a lease lifetime (1 s x 3 misses): B has swept and not taken it
            assert (len(inits.arrived), inits.completed) == (1, 1)
            assert [a for a, _ in _health(r, "init-once")] == ["plugin.healthy"]
        finally:
            await runtime.stop()


async def _listed_health(core: CoreProcess, plugin_id: str, health: int) -> bool:
    listed = await _admin(core, "ListPlugins", admin_pb.ListPluginsRequest())
    return any(p.plugin_id == plugin_id and p.health == health for p in listed.plugins)  # type: ignore[attr-defined]


@pytest.mark.serial
async def test_after_kill_9_of_the_lease_holder_the_other_replica_inits_and_sweeps(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()  # the plugin is slow to initialise: A dies while its Init is in flight
    inits = _count_inits(monkeypatch, gate)
    with _replicas(tmp_path, postgres, postgres_database) as r:
        runtime = await _sdk_plugin(r.a, tmp_path, "taken-over")
        try:
            await until(lambda: len(inits.arrived) == 1, 10, "A's Init reaching the plugin")
            os.kill(r.a.process.pid, signal.SIGKILL)
            r.a.process.wait(10)
            killed = time.monotonic()
            await asyncio.sleep(0.5)
            gate.set()
            # B claims the lease once A's has expired (3 s after A's last renewal) and sends Init again.
            await until(
                lambda: _listed_health(r.b, "taken-over", admin_pb.PLUGIN_HEALTH_HEALTHY),
                15,
                "B initialising the plugin",
            )
            after_kill = [t for t in inits.arrived if t > killed]
            assert len(after_kill) == 1, inits  # exactly one Init from B
            assert after_kill[0] - killed <= 3 + 1.5, "B took over later than the lease lifetime"
            assert inits.completed == 1  # A's Init never completed (its caller died)
            assert "lifecycle lease taken over; sending Init" in r.b.log()
            # B sweeps it too: its heartbeats go to dead A, so B notices them missing.
            await until(lambda: len(_health(r, "taken-over")) == 2, 10, "B noticing the missed heartbeats")
            assert _health(r, "taken-over") == [
                ("plugin.healthy", "Init answered and health SERVING"),
                ("plugin.unhealthy", "missed 3 heartbeats"),
            ]
        finally:
            await runtime.stop()


@dataclass
class Balancers:
    """The load balancer in front of both replicas' mTLS ports and one in front of their bootstrap ports."""

    mtls: ProxyThread
    bootstrap: ProxyThread

    def route(self, *, mtls: int | None, bootstrap: int | None) -> None:
        for thread, index in ((self.mtls, mtls), (self.bootstrap, bootstrap)):
            balancer = thread.proxy
            assert isinstance(balancer, TcpBalancer)
            thread.call(lambda b=balancer, i=index: b.route(i))  # type: ignore[misc]

    def landed(self) -> tuple[list[int], list[int]]:
        return (list(self.mtls.proxy.landed), list(self.bootstrap.proxy.landed))  # type: ignore[attr-defined]


def _address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


@contextlib.contextmanager
def _balanced(r: Replicas) -> Iterator[Balancers]:
    mtls = TcpBalancer([_address(c.listen_address) for c in (r.a, r.b)])
    bootstrap = TcpBalancer([_address(c.bootstrap_address) for c in (r.a, r.b)])
    with ProxyThread(mtls) as m, ProxyThread(bootstrap) as b:
        yield Balancers(m, b)


def _behind(lb: Balancers, settings: PluginSettings) -> PluginSettings:
    return dataclasses_replace(
        settings, core_address=f"127.0.0.1:{lb.mtls.port}", bootstrap_address=f"127.0.0.1:{lb.bootstrap.port}"
    )


async def _lb_plugin(
    core: CoreProcess, lb: Balancers, tmp_path: pathlib.Path, plugin_id: str, servicer: RecordingStore, **fields: object
) -> PluginRuntime:
    manifest_path = write_manifest(tmp_path, plugin_id, **fields)
    approval = await approve(core, load_manifest(manifest_path), replace=True)
    runtime = PluginRuntime([servicer], _behind(lb, plugin_settings(core, manifest_path, approval.join_token)))
    await runtime.start()
    # Connect the (lazy) mTLS channel now, while the balancer still routes as the test set it.
    await asyncio.wait_for(runtime.core_channel.channel_ready(), 10)
    return runtime


async def test_through_the_load_balancer_a_plugin_registers_on_a_serves_on_b_and_renews_elsewhere(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database, extra=("--leaf-ttl", "10")) as r, _balanced(r) as lb:
        vault_store = RecordingStore()
        # The vault's registration lands on A, its calls, heartbeats and streams on B.
        lb.route(mtls=1, bootstrap=0)
        vault = await _lb_plugin(r.a, lb, tmp_path, "vault", vault_store, provides=[RETRIEVE_METHOD])
        # The caller registers through B and calls through B: the operator lane on B
        # forwards to the endpoint of a plugin registered through A.
        lb.route(mtls=1, bootstrap=1)
        caller = await _lb_plugin(
            r.a, lb, tmp_path, "caller", RecordingStore(), calls=[{"plugin_id": "vault", "method": RETRIEVE_METHOD}]
        )
        try:
            await until(lambda: _listed_health(r.b, "vault", admin_pb.PLUGIN_HEALTH_HEALTHY), 15, "vault healthy")
            await until(lambda: _listed_health(r.a, "caller", admin_pb.PLUGIN_HEALTH_HEALTHY), 15, "caller healthy")
            stream = config_grpc.ConfigServiceStub(vault.core_channel).WatchMyConfig(config_pb.WatchMyConfigRequest())
            assert isinstance(await stream.read(), config_pb.WatchMyConfigResponse)  # a stream open on B
            mtls_before, bootstrap_landed = lb.landed()
            assert set(mtls_before) == {1} and set(bootstrap_landed) == {0, 1}
            # From now on new connections land on A: each renewal (10 s leaves, renewed at 2/3)
            # replaces the plugin's channel, so the renewed vault heartbeats and is called through A.
            lb.route(mtls=0, bootstrap=0)
            calls, started = 0, time.monotonic()
            while vault.renewals < 1 or caller.renewals < 1:
                assert time.monotonic() - started < 20, "no renewal"
                reply = await caller.call(
                    "vault", storage_pb2.RetrieveObjectRequest(object_key=f"k{calls}"), timeout=10
                )
                assert reply.object.object_key == f"k{calls}"  # type: ignore[attr-defined]
                calls += 1
                await asyncio.sleep(0.2)
            for n in range(5):  # after the renewals: through A
                await caller.call("vault", storage_pb2.RetrieveObjectRequest(object_key="after"), timeout=10)
                calls += 1
            assert vault_store.calls == ["RetrieveObject"] * calls  # every call reached the vault, none failed
            mtls_landed, _ = lb.landed()
            assert 0 in mtls_landed[len(mtls_before) :], mtls_landed  # the renewals' connections landed on A
            assert await _heartbeat_through(vault) is None
            stream.cancel()
        finally:
            for runtime in (caller, vault):
                await runtime.stop("test over")
        # One liveness record per plugin, and no failure: heartbeats on either replica count on both.
        for plugin_id in ("vault", "caller"):
            assert [a for a, _ in _health(r, plugin_id)] == ["plugin.healthy"], plugin_id
        renewed = r.audit(action="/vivified.registry.v1.PluginRegistryService/RenewCertificate")
        assert {x.actor for x in renewed} >= {"plugin:vault", "plugin:caller"} and {x.outcome for x in renewed} == {
            "OK"
        }
        lane = r.audit(actor="plugin:caller", action=f"/{RETRIEVE_METHOD}")
        assert len(lane) == calls and {x.outcome for x in lane} == {"OK"}  # audited on B, then on A


async def _heartbeat_through(runtime: PluginRuntime) -> grpc.aio.AioRpcError | None:
    return await _heartbeat(runtime.core_channel)


class KeyedStore(RecordingStore):
    """A vault remembering the object key of every RetrieveObject it answered."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def RetrieveObject(self, request: storage_pb2.RetrieveObjectRequest, context: object) -> object:
        self.keys.append(request.object_key)
        return await super().RetrieveObject(request, context)


@dataclass
class History:
    """What one caller sent and what the core acknowledged."""

    acked_calls: list[str]
    acked_events: list[str]
    failures: list[tuple[float, str]]


async def _load(caller: PluginRuntime, name: str, history: History, stop: asyncio.Event) -> None:
    """Calls to the vault and event publishes, alternating, until `stop`; a
    failure (the replica died under the call) is recorded and the next one tried."""
    n = 0
    while not stop.is_set():
        n += 1
        key = f"{name}-{n}"
        try:
            await caller.call("vault", storage_pb2.RetrieveObjectRequest(object_key=key), timeout=5)
            history.acked_calls.append(key)
            await caller.publish(EmailSent(email_id=key), event_id=key, timeout=5)
            history.acked_events.append(key)
        except Exception as exc:  # noqa: BLE001 - any failure counts as not acknowledged
            history.failures.append((time.monotonic(), f"{key}: {exc}"[:200]))
            await asyncio.sleep(0.1)


async def test_kill_9_of_one_replica_under_load_loses_no_acknowledged_call_or_event(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with (
        redis_running(tmp_path / "redis") as redis,
        _replicas(tmp_path, postgres, postgres_database, extra=("--redis-url", redis.url, "--leaf-ttl", "600")) as r,
        _balanced(r) as lb,
    ):
        vault_store, inbox = KeyedStore(), Inbox()
        lb.route(mtls=1, bootstrap=0)  # the vault (and subscriber) is served by B, the survivor
        vault = await _lb_plugin(
            r.a, lb, tmp_path, "vault", vault_store, provides=[RETRIEVE_METHOD], subscribes=[EMAIL_SENT]
        )
        calls = [{"plugin_id": "vault", "method": RETRIEVE_METHOD}]
        lb.route(mtls=0, bootstrap=0)
        on_a = await _lb_plugin(r.a, lb, tmp_path, "caller-a", RecordingStore(), calls=calls, publishes=[EMAIL_SENT])
        lb.route(mtls=1, bootstrap=1)
        on_b = await _lb_plugin(r.a, lb, tmp_path, "caller-b", RecordingStore(), calls=calls, publishes=[EMAIL_SENT])
        lb.route(mtls=None, bootstrap=None)  # from now on: round robin, skipping a dead replica
        runtimes = [on_a, on_b, vault]
        try:
            await until(lambda: _listed_health(r.b, "vault", admin_pb.PLUGIN_HEALTH_HEALTHY), 15, "vault healthy")
            await vault.subscribe("mail", {EmailSent: inbox}).opened()
            histories = {"a": History([], [], []), "b": History([], [], [])}
            stop = asyncio.Event()
            loads = [asyncio.ensure_future(_load(c, n, histories[n], stop)) for c, n in ((on_a, "a"), (on_b, "b"))]
            await until(lambda: min(len(h.acked_events) for h in histories.values()) >= 20, 30, "load on both")
            os.kill(r.a.process.pid, signal.SIGKILL)  # A dies with calls and publishes in flight
            killed = time.monotonic()
            r.a.process.wait(10)
            acked_at_kill = len(histories["a"].acked_events)
            # caller-a's channel reconnects through the balancer, which now reaches only B.
            await until(lambda: len(histories["a"].acked_events) >= acked_at_kill + 20, 30, "caller-a served by B")
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*loads)
            acked_calls = {k for h in histories.values() for k in h.acked_calls}
            acked_events = {k for h in histories.values() for k in h.acked_events}
            lost_calls = acked_calls - set(vault_store.keys)
            await until(lambda: acked_events <= set(inbox.event_ids()), 30, "every acknowledged event delivered")
            lost_events = acked_events - set(inbox.event_ids())
            print(
                f"\nkill -9 of A under load: {len(acked_calls)} calls and {len(acked_events)} events acknowledged, "
                f"lost {len(lost_calls)} calls, {len(lost_events)} events; caller-a saw "
                f"{len(histories['a'].failures)} failures, caller-b {len(histories['b'].failures)}"
            )
            assert lost_calls == set() and lost_events == set()
            assert histories["b"].failures == [], histories["b"].failures  # B kept serving throughout
            assert all(t >= killed - 5 for t, _ in histories["a"].failures)  # only around the kill
        finally:
            for runtime in runtimes:
                await runtime.stop("test over")
        # Every acknowledged call has its audit record (on the replica that served it).
        for name, history in histories.items():
            audited = [
                x for x in r.audit(actor=f"plugin:caller-{name}", action=f"/{RETRIEVE_METHOD}") if x.outcome == "OK"
            ]
            assert len(audited) >= len(history.acked_calls), name
        verified = run_vivified(
            "audit",
            "--data-dir",
            str(r.b.data_dir),
            "--database-url",
            r.owner_url,
            "verify",
            "--audit-writers",
            "shared",
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_m3_a5_a_plugin_revoked_through_a_cannot_resume_through_b_even_before_b_synced(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    """Resume decides on the database's view, not the replica's last sync: a
    revocation committed through A is never resumed past on B, however soon
    after it the call comes; a plugin registered through A resumes through B."""
    with _replicas(tmp_path, postgres, postgres_database) as r:
        plugin = await admitted_plugin(r.a, "resume-across")
        manifest = manifest_message("resume-across")
        async with plugin_channel(r.b, plugin) as channel:
            await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
            reply = await registry_pb2_grpc.PluginRegistryServiceStub(channel).Resume(
                registry_pb2.ResumeRequest(manifest=manifest, endpoint="127.0.0.1:5"), timeout=10
            )
            assert reply.heartbeat_interval_seconds == 1
        listed = await _admin(r.a, "ListPlugins", admin_pb.ListPluginsRequest())
        assert {p.plugin_id: p.endpoint for p in listed.plugins}["resume-across"] == "127.0.0.1:5"  # type: ignore[attr-defined]
        for n in range(SAMPLES):
            victim = await admitted_plugin(r.a, f"revoked-resume-{n}")
            async with plugin_channel(r.b, victim) as channel:
                await until(lambda: _served(channel), BOUND + 1, "B serving the plugin")
                await _admin(r.a, "RevokePlugin", admin_pb.RevokePluginRequest(plugin_id=victim.plugin_id))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await registry_pb2_grpc.PluginRegistryServiceStub(channel).Resume(
                        registry_pb2.ResumeRequest(manifest=manifest_message(victim.plugin_id), endpoint="127.0.0.1:6"),
                        timeout=10,
                    )
            assert (refused.value.code(), error_info(refused.value).reason) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "CERTIFICATE_REVOKED",
            )
            rows = r.audit(
                actor=f"plugin:{victim.plugin_id}", action="/vivified.registry.v1.PluginRegistryService/Resume"
            )
            assert [(x.decision, x.reason) for x in rows] == [("deny", "CERTIFICATE_REVOKED")]
