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
import pathlib
import statistics
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509
from support.clients import (
    PluginIdentity,
    admitted_plugin,
    error_info,
    operator_channel,
    plugin_channel,
    target_override,
)
from support.postgres_server import APP_ROLE, PostgresServer
from support.processes import CoreProcess, core_running, run_vivified
from support.raw_plugin import initialised_plugin
from support.proxy_thread import ProxyThread
from support.tcp_proxy import TcpProxy
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.config.v1 import config_pb2 as config_pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.core.ca import CAConfig, CertificateAuthority
from vivified.core.clock import SystemClock
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc

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
    tmp_path: pathlib.Path, postgres: PostgresServer, database: str, *, b_database_url: str | None = None
) -> Iterator[Replicas]:
    _migrate(postgres, database)
    url = postgres.url(database, app_role=True)
    common = (*_shared_ca(tmp_path / "ca"), "--audit-writers", "shared", "--heartbeat-interval", "1",
              "--registry-sync-bound", str(BOUND),
              "--settings-refresh", "1")
    with core_running(tmp_path / "a", "--database-url", url, *common) as a, core_running(
        tmp_path / "b", "--database-url", b_database_url or url, *common
    ) as b:
        yield Replicas(a, b, postgres.url(database))


async def _heartbeat(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError | None:
    try:
        await registry_pb2_grpc.PluginRegistryServiceStub(channel).Heartbeat(registry_pb2.HeartbeatRequest(), timeout=5)
    except grpc.aio.AioRpcError as err:
        return err
    return None


async def _refused_within(channel: grpc.aio.Channel, started: float, limit: float) -> tuple[float, grpc.aio.AioRpcError]:
    """Heartbeat until refused; returns (seconds since `started`, the refusal)."""
    while (err := await _heartbeat(channel)) is None:
        assert time.monotonic() - started < limit, "the change did not reach the other replica"
    return time.monotonic() - started, err


async def _admin(core: CoreProcess, method: str, request: object) -> object:
    async with operator_channel(core) as channel:
        return await getattr(admin_grpc.PluginAdminServiceStub(channel), method)(request, timeout=10)


def _report(what: str, times: list[float]) -> None:
    print(f"\n{what} propagation A -> B over {len(times)}: median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")


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
        assert [(x.outcome, x.reason) for x in opened] == [("STREAM_OPENED", "")] * 3 + [
            ("UNAUTHENTICATED", "CERTIFICATE_REVOKED")
        ]
        revokes = r.audit(action="/vivified.admin.v1.PluginAdminService/RevokePlugin", resource="plugin/watcher")
        assert len(revokes) == 1 and revokes[0].outcome == "OK"


async def test_setting_overrides_through_a_apply_on_b(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        async with operator_channel(r.a) as channel:
            await config_grpc.ConfigServiceStub(channel).SetCoreSetting(
                config_pb.SetCoreSettingRequest(key="event_max_attempts", value="7", reason="shared"), timeout=10)
        stored = time.monotonic()

        async def on_b() -> bool:
            async with operator_channel(r.b) as channel:
                listed = await config_grpc.ConfigServiceStub(channel).ListCoreSettings(
                    config_pb.ListCoreSettingsRequest(), timeout=10)
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
            assert len(stale) == 1 + refused_after_heal  # one record per refused call
            assert {(x.outcome, x.rule_id) for x in stale} == {("UNAVAILABLE", "status-gate")}


async def test_operator_certificate_revoked_through_a_is_refused_by_b(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    with _replicas(tmp_path, postgres, postgres_database) as r:
        b_serial = format(x509.load_pem_x509_certificate((r.b.operator_dir / "operator.crt").read_bytes())
                          .serial_number, "x")
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
                (d / "ca.crt").read_bytes(), (d / "operator.key").read_bytes(), (d / "operator.crt").read_bytes())
            try:
                async with grpc.aio.secure_channel(core.listen_address, creds, options=target_override(core)) as ch:
                    await admin_grpc.PluginAdminServiceStub(ch).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
            except grpc.aio.AioRpcError as err:
                return err
            return None

        assert await operator_call(r.b, r.b) is None and await operator_call(r.a, r.b) is None
        revoked = run_vivified("operators", "--data-dir", str(r.a.data_dir), "revoke", b_serial,
                               "--reason", "laptop lost")
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
