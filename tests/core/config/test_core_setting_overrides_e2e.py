"""Runtime overrides of core settings on a real core: the database layer beats
environment and flags at once and again at the next start, every change is
audited with who and why and kept in history, bootstrap keys and mistyped
values are refused, and only configuration administrators may change them."""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess

import grpc
import pytest

from support.clients import (
    admitted_plugin,
    audit_rows,
    bootstrap_channel,
    error_info,
    operator_channel,
)
from support.processes import (
    CoreProcess,
    clean_env,
    run_vivified,
    start_core,
    stop_process,
)
from support.users import bearer, expect_error, login, users_pb
from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

METHOD = "/vivified.config.v1.ConfigService/"
FLAGS = ("--breaker-cooldown", "2")
ENV = {"VIVIFIED_EVENT_MAX_ATTEMPTS": "4"}
DB_SOURCE = "database (set by operator:admin: flaky consumer needs more tries)"


def _cli(core: CoreProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_vivified("config", "core", "--data-dir", str(core.data_dir), *argv)


async def _call(core: CoreProcess, method: str, request: object) -> object:
    async with operator_channel(core) as channel:
        return await getattr(config_grpc.ConfigServiceStub(channel), method)(request, timeout=10)


async def _settings(core: CoreProcess) -> dict[str, pb.CoreSetting]:
    listed = await _call(core, "ListCoreSettings", pb.ListCoreSettingsRequest())
    return {s.key: s for s in listed.settings}  # type: ignore[attr-defined]


def _show(data_dir: pathlib.Path, *flags: str) -> dict[str, str]:
    shown = run_vivified("config", "show", "--data-dir", str(data_dir), *flags, env=clean_env(**ENV))
    assert shown.returncode == 0, shown.stderr
    return {line.split()[0]: line for line in shown.stdout.splitlines()}


async def _refused(core: CoreProcess, key: str, value: str, reason: str) -> grpc.aio.AioRpcError:
    request = pb.SetCoreSettingRequest(key=key, value=value, reason="try it")
    err = await expect_error(_call(core, "SetCoreSetting", request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == reason
    rows = audit_rows(core, action=METHOD + "SetCoreSetting", reason=reason, resource=f"core-setting/{key}")
    assert len(rows) == 1 and rows[0].actor == "operator:admin"
    return err


@pytest.mark.asyncio
async def test_override_audited_applied_live_kept_at_restart_and_shown(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    core = start_core(data_dir, *FLAGS, env=clean_env(**ENV))
    try:
        before = await _settings(core)
        assert (before["event_max_attempts"].effective_value, before["event_max_attempts"].source) == (
            "4",
            "env:VIVIFIED_EVENT_MAX_ATTEMPTS",
        )
        assert (before["breaker_cooldown"].effective_value, before["breaker_cooldown"].source) == ("2.0", "flag")
        assert "database_url" not in before and not before["event_max_attempts"].has_override

        done = _cli(core, "set", "event_max_attempts", "9", "--reason", "flaky consumer needs more tries")
        assert done.returncode == 0, done.stderr
        assert "override 9 by operator:admin" in done.stdout and "not (yet) applied" not in done.stdout
        assert done.stdout.split()[:2] == ["event_max_attempts", "9"] and DB_SOURCE in done.stdout  # applied now
        answer = await _call(
            core,
            "SetCoreSetting",
            pb.SetCoreSettingRequest(key="breaker_cooldown", value=" 7.5 ", reason="slow upstream recovers late"),
        )
        setting = answer.setting  # type: ignore[attr-defined]
        assert (setting.override_value, setting.effective_value, setting.pending_restart) == ("7.5", "7.5", False)

        # Refusals: a bootstrap key, an unknown key, a mistyped and an out-of-range value.
        bootstrap = await _refused(core, "database_url", "sqlite:////tmp/elsewhere.db", "SETTING_NOT_OVERRIDABLE")
        assert "'database_url' is a bootstrap or security setting and cannot be overridden" in bootstrap.details()
        listed_keys = "overridable keys: leaf_ttl_seconds, heartbeat_interval_seconds, event_ack_timeout"
        assert listed_keys in bootstrap.details()
        unknown = await _refused(core, "event_max_atempts", "9", "SETTING_NOT_OVERRIDABLE")
        assert "'event_max_atempts' is not a core setting" in unknown.details()
        typed = await _refused(core, "event_publish_rate", "fast", "CONFIG_INVALID")
        assert "override: event_publish_rate must be a number, got 'fast'" in typed.details()
        ranged = await _refused(core, "leaf_ttl_seconds", "5", "CONFIG_INVALID")
        assert "leaf_ttl_seconds must be at least 10" in ranged.details()
        unreasoned = await expect_error(
            _call(core, "ClearCoreSetting", pb.ClearCoreSettingRequest(key="breaker_cooldown"))
        )
        assert error_info(unreasoned).reason == "INVALID_REQUEST"

        audited = audit_rows(core, action=METHOD + "SetCoreSetting", outcome="OK")
        assert [(r.actor, r.resource) for r in audited] == [
            ("operator:admin", "core-setting/event_max_attempts"),
            ("operator:admin", "core-setting/breaker_cooldown"),
        ]
        assert '"change_reason":"flaky consumer needs more tries"' in audited[0].detail

        for key, value in (("leaf_ttl_seconds", "900"), ("heartbeat_interval_seconds", "3")):
            await _call(core, "SetCoreSetting", pb.SetCoreSettingRequest(key=key, value=value, reason="tighter"))
        # Applied live: a plugin registering now gets the new interval and leaf lifetime.
        plugin = await admitted_plugin(core, "before-restart")
        assert plugin.response.heartbeat_interval_seconds == 3
        remaining = plugin.leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
        assert 840 <= remaining.total_seconds() <= 905  # 900 s, not the default 3600

        live = await _settings(core)
        attempts = live["event_max_attempts"]
        assert (attempts.effective_value, attempts.override_value, attempts.pending_restart) == ("9", "9", False)
        assert attempts.source == DB_SOURCE
        assert attempts.override_actor == "operator:admin"
        assert attempts.override_reason == "flaky consumer needs more tries"
    finally:
        stop_process(core.process)

    # The next start applies the stored overrides above environment and flags again.
    core = start_core(data_dir, *FLAGS, env=clean_env(**ENV))
    try:
        after = await _settings(core)
        assert (after["event_max_attempts"].effective_value, after["event_max_attempts"].source) == ("9", DB_SOURCE)
        assert after["breaker_cooldown"].effective_value == "7.5" and not after["breaker_cooldown"].pending_restart
        started = audit_rows(core, action="core.start")
        assert (
            '"overrides":"leaf_ttl_seconds=900,heartbeat_interval_seconds=3.0,event_max_attempts=9,'
            'breaker_cooldown=7.5"'
        ) in started[-1].detail
        # The components were built from the overridden config.
        plugin = await admitted_plugin(core, "after-restart")
        assert plugin.response.heartbeat_interval_seconds == 3
        remaining = plugin.leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
        assert 840 <= remaining.total_seconds() <= 905  # 900 s, not the default 3600

        shown = _show(data_dir, *FLAGS)
        assert shown["event_max_attempts"].split()[1] == "9" and shown["event_max_attempts"].endswith(DB_SOURCE)
        assert shown["breaker_cooldown"].split()[1] == "7.5"
        assert shown["event_ack_timeout"].split()[1:] == ["30.0", "default"]

        cleared = _cli(core, "unset", "event_max_attempts", "--reason", "consumer fixed")
        assert cleared.returncode == 0, cleared.stderr
        assert cleared.stdout.split()[:3] == ["event_max_attempts", "4", "env:VIVIFIED_EVENT_MAX_ATTEMPTS"]
        assert "no override" in cleared.stdout and "not (yet) applied" not in cleared.stdout
        history = await _call(core, "ListCoreSettingHistory", pb.ListCoreSettingHistoryRequest())
        changes = history.changes  # type: ignore[attr-defined]
        assert [(c.key, c.old_value, c.new_value, c.change_actor, c.reason) for c in changes] == [
            ("event_max_attempts", "9", "", "operator:admin", "consumer fixed"),
            ("heartbeat_interval_seconds", "", "3.0", "operator:admin", "tighter"),
            ("leaf_ttl_seconds", "", "900", "operator:admin", "tighter"),
            ("breaker_cooldown", "", "7.5", "operator:admin", "slow upstream recovers late"),
            ("event_max_attempts", "", "9", "operator:admin", "flaky consumer needs more tries"),
        ]
        lines = _cli(core, "history", "--limit", "1").stdout.splitlines()
        assert len(lines) == 1 and "event_max_attempts 9 -> (cleared) by operator:admin: consumer fixed" in lines[0]
    finally:
        stop_process(core.process)
    shown = _show(data_dir, *FLAGS)
    assert shown["event_max_attempts"].split()[1:] == ["4", "env:VIVIFIED_EVENT_MAX_ATTEMPTS"]


def test_config_show_without_a_reachable_database_says_so(tmp_path: pathlib.Path) -> None:
    shown = run_vivified(
        "config",
        "show",
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        "postgresql://vivified@127.0.0.1:1/vivified",
        env=clean_env(),
    )
    assert shown.returncode == 0, shown.stderr
    assert "note: runtime overrides not read: database" in shown.stdout
    assert "event_max_attempts" in shown.stdout and "Traceback" not in shown.stderr


@pytest.mark.asyncio
async def test_viewer_refused_operator_allowed(core: CoreProcess) -> None:
    password = "CANARY-settings-pw-5b7e1c93"
    async with operator_channel(core) as channel:
        viewer = (
            await users_grpc.UserAdminServiceStub(channel).CreateUser(
                users_pb.CreateUserRequest(username="settings-viewer", password=password, roles=["viewer"]), timeout=10
            )
        ).user
    token = (await login(core, "settings-viewer", password)).tokens.access_token
    for method, request in (
        ("SetCoreSetting", pb.SetCoreSettingRequest(key="event_max_attempts", value="2", reason="viewer tries")),
        ("ListCoreSettings", pb.ListCoreSettingsRequest()),
    ):
        async with bootstrap_channel(core) as channel:
            stub = config_grpc.ConfigServiceStub(channel)
            denied = await expect_error(getattr(stub, method)(request, metadata=bearer(token), timeout=10))
        info = error_info(denied)
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-config-admin")
        assert len(audit_rows(core, action=METHOD + method, actor=f"user:{viewer.user_id}")) == 1
    listed = await _settings(core)
    assert not listed["event_max_attempts"].has_override
    assert (listed["heartbeat_interval_seconds"].effective_value, listed["heartbeat_interval_seconds"].source) == (
        "1.0",
        "flag",
    )
