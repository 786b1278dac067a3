"""Runtime overrides of core settings take effect on a running core, with no
restart: a lowered call rate refuses calls it allowed a moment before, a
changed attempt limit dead-letters after the new number of deliveries, `unset`
restores the lower layer at once, an override the core refuses is reported as
not applied, and a change stored through one replica applies on another
sharing PostgreSQL within its refresh interval."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import time

import grpc
import pytest
import sqlalchemy as sa

from support.clients import (
    admitted_plugin,
    audit_rows,
    error_info,
    operator_channel,
    plugin_channel,
)
from support.events import MESSAGE_SEND_REQUESTED, Inbox, event_plugin
from support.postgres_server import APP_ROLE, PostgresServer
from support.processes import CoreProcess, core_running, run_cli, run_vivified
from support.waiting import until
from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.events.v1.canonical_pb2 import MessageSendRequested
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc

pytestmark = pytest.mark.e2e

REFRESH = 1.0
"""--settings-refresh of the cores here: the bound on a replica applying another's change."""


def _cli(core: CoreProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_vivified("config", "core", "--data-dir", str(core.data_dir), *argv)


async def _call(core: CoreProcess, method: str, request: object) -> object:
    async with operator_channel(core) as channel:
        return await getattr(config_grpc.ConfigServiceStub(channel), method)(request, timeout=10)


async def _setting(core: CoreProcess, key: str) -> pb.CoreSetting:
    listed = await _call(core, "ListCoreSettings", pb.ListCoreSettingsRequest())
    return next(s for s in listed.settings if s.key == key)  # type: ignore[attr-defined]


async def _heartbeats(core: CoreProcess, channel: grpc.aio.Channel, count: int) -> list[grpc.aio.AioRpcError]:
    """Send up to `count` heartbeats, stopping at the first refusal; returns the refusals."""
    stub = registry_pb2_grpc.PluginRegistryServiceStub(channel)
    for _ in range(count):
        try:
            await stub.Heartbeat(registry_pb2.HeartbeatRequest(), timeout=10)
        except grpc.aio.AioRpcError as err:
            return [err]
    return []


@pytest.mark.asyncio
async def test_call_rate_and_event_attempts_change_live_and_unset_restores(tmp_path: pathlib.Path) -> None:
    flags = (
        "--heartbeat-interval",
        "1",
        "--event-ack-timeout",
        "1",
        "--event-max-attempts",
        "5",
        "--settings-refresh",
        "0.5",
    )
    with core_running(tmp_path / "data", *flags) as core:
        # call_rate: the chain's per-principal buckets read the rate at every call.
        plugin = await admitted_plugin(core, "live-limited")
        async with plugin_channel(core, plugin) as channel:
            assert await _heartbeats(core, channel, 20) == []  # default 500/s, burst 1000
            done = _cli(core, "set", "call_rate", "1", "--reason", "noisy plugins")
            assert done.returncode == 0, done.stderr
            assert done.stdout.split()[:2] == ["call_rate", "1.0"] and "database (set by operator:admin" in done.stdout
            assert "not (yet) applied" not in done.stdout
            refused = await _heartbeats(core, channel, 4)  # burst now 2: the third call at the latest
            assert len(refused) == 1 and refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            info = error_info(refused[0])
            assert (info.reason, info.metadata["rule_id"]) == ("RATE_LIMITED", "rate-limit")
            denied = audit_rows(core, actor="plugin:live-limited", reason="RATE_LIMITED")
            assert len(denied) == 1 and denied[0].decision == "deny" and denied[0].action.endswith("/Heartbeat")

            cleared = _cli(core, "unset", "call_rate", "--reason", "quiet again")
            assert cleared.returncode == 0, cleared.stderr
            assert cleared.stdout.split()[:3] == ["call_rate", "500.0", "default"]
            assert await _heartbeats(core, channel, 20) == []  # the lower layer's rate, at once
        assert "core setting call_rate changed live: 500.0 -> 1.0 (override, by operator:admin)" in core.log()
        assert "core setting call_rate changed live: 1.0 -> 500.0 (override cleared, by operator:admin)" in core.log()

        # event_max_attempts: the store reads it at every delivery.
        publisher = await event_plugin(core, tmp_path, "live-pub", publishes=[MESSAGE_SEND_REQUESTED])
        subscriber = await event_plugin(core, tmp_path, "live-sub", subscribes=[MESSAGE_SEND_REQUESTED])
        try:
            inbox = Inbox(failing=True)
            await subscriber.subscribe("sender", {MessageSendRequested: inbox}).opened()
            answer = await _call(
                core,
                "SetCoreSetting",
                pb.SetCoreSettingRequest(key="event_max_attempts", value="2", reason="give up sooner"),
            )
            setting = answer.setting  # type: ignore[attr-defined]
            assert (setting.effective_value, setting.pending_restart) == ("2", False)
            await publisher.publish(MessageSendRequested(message_id="twice"), event_id="twice")
            await until(lambda: inbox.event_ids().count("twice") >= 2, 15, "two attempts")
            await asyncio.sleep(2.5)  # past the ack timeout twice: no third attempt
            assert inbox.event_ids().count("twice") == 2
            listed = run_cli(core, "events", "--json", "dlq", "list", "live-sub/sender")
            assert listed.returncode == 0, listed.stderr
            letters = json.loads(listed.stdout)
            assert [(d["event"]["event_id"], d["attempts"]) for d in letters["dead_letters"]] == [("twice", 2)]

            answer = await _call(
                core,
                "ClearCoreSetting",
                pb.ClearCoreSettingRequest(key="event_max_attempts", reason="back to the flag"),
            )
            setting = answer.setting  # type: ignore[attr-defined]
            assert (setting.effective_value, setting.source, setting.has_override) == ("5", "flag", False)
            await publisher.publish(MessageSendRequested(message_id="five"), event_id="five")
            await until(lambda: inbox.event_ids().count("five") >= 5, 30, "five attempts")
            await asyncio.sleep(2.5)
            assert inbox.event_ids().count("five") == 5
        finally:
            await publisher.stop()
            await subscriber.stop()

        # An override the core refuses (written behind the service's back) is
        # reported as not applied, and the lower layer stays in force.
        engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO core_setting_overrides (key, value, updated_by, reason, updated_at) "
                        "VALUES ('leaf_ttl_seconds', '5', 'operator:admin', 'too short', 0)"
                    )
                )
        finally:
            engine.dispose()
        await until(lambda: "runtime override of leaf_ttl_seconds not applied" in core.log(), 10, "the refusal")
        leaf = await _setting(core, "leaf_ttl_seconds")
        assert (leaf.effective_value, leaf.source, leaf.override_value, leaf.pending_restart) == (
            "3600",
            "default",
            "5",
            True,
        )
        listed = _cli(core, "list").stdout
        assert "leaf_ttl_seconds" in listed and "not (yet) applied by this core" in listed


async def _limited(core: CoreProcess) -> grpc.aio.AioRpcError | None:
    """One operator call on `core`; its refusal, if any."""
    try:
        await _setting(core, "call_rate")
    except grpc.aio.AioRpcError as err:
        return err
    return None


@pytest.mark.asyncio
async def test_a_change_through_one_replica_applies_on_the_other_within_the_refresh_interval(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    migrated = run_vivified("db", "upgrade", "--database-url", postgres.url(postgres_database), "--app-role", APP_ROLE)
    assert migrated.returncode == 0, migrated.stderr
    flags = (
        "--database-url",
        postgres.url(postgres_database, app_role=True),
        "--settings-refresh",
        str(REFRESH),
        "--audit-writers",
        "shared",
    )
    with core_running(tmp_path / "a", *flags) as core_a, core_running(tmp_path / "b", *flags) as core_b:
        await _call(
            core_a,
            "SetCoreSetting",
            pb.SetCoreSettingRequest(key="event_max_attempts", value="7", reason="shared tuning"),
        )
        stored_at = time.monotonic()
        seen = await _setting(core_b, "event_max_attempts")
        if seen.effective_value == "5":  # B has not polled yet: the list says so
            assert seen.has_override and seen.override_value == "7" and seen.pending_restart
        while (seen := await _setting(core_b, "event_max_attempts")).effective_value != "7":
            assert time.monotonic() - stored_at < REFRESH + 2, "replica B did not apply the change in time"
            await asyncio.sleep(0.05)
        assert seen.source == "database (set by operator:admin: shared tuning)" and not seen.pending_restart
        assert time.monotonic() - stored_at <= REFRESH + 1.5  # one refresh interval plus a database read

        # A component on B follows: its chain refuses B's operator at a call rate set through A.
        await _call(core_a, "SetCoreSetting", pb.SetCoreSettingRequest(key="call_rate", value="1", reason="shed load"))
        stored_at = time.monotonic()
        while (err := await _limited(core_b)) is None:
            assert time.monotonic() - stored_at < REFRESH + 3, "replica B did not lower its call rate"
            await asyncio.sleep(0.1)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(err).reason == "RATE_LIMITED"
        assert "core setting call_rate changed live: 500.0 -> 1.0 (override, by operator:admin)" in core_b.log()

        await _call(core_a, "ClearCoreSetting", pb.ClearCoreSettingRequest(key="call_rate", reason="load shed"))
        await asyncio.sleep(REFRESH + 1)  # B re-reads within one interval; its bucket refills at the old rate
        for _ in range(10):  # well over the burst of 2 that call_rate 1 allowed
            assert await _limited(core_b) is None
        assert "changed live: 1.0 -> 500.0 (override cleared, by operator:admin)" in core_b.log()
        owner = sa.create_engine(postgres.url(postgres_database))
        try:
            with owner.connect() as conn:
                denials = conn.execute(
                    sa.text("SELECT count(*) FROM audit_log WHERE reason = 'RATE_LIMITED' AND actor = 'operator:admin'")
                ).scalar_one()
        finally:
            owner.dispose()
        assert denials == 1  # the one refusal above, recorded once
