"""Plugin configuration on a real core: schema validation, history and audit
with who and why, trait-gated administration, a plugin reading and watching
its own configuration and nobody else's (C4), and a canary secret that is
sealed at rest and masked everywhere but in the owning plugin's reads (E4, K4)."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import time

import grpc
import pytest

from support.clients import (
    admitted_plugin,
    audit_rows,
    bootstrap_channel,
    error_info,
    operator_channel,
    plugin_channel,
)
from support.processes import CoreProcess, clean_env
from support.users import (
    auth_call,
    auth_pb,
    bearer,
    code_at,
    create_admin,
    expect_error,
    login,
    users_pb,
)
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = pytest.mark.asyncio

CANARY = "CANARY-smtp-secret-4d1f7b29e6"
PASSWORD = "CANARY-config-pw-8e2c4a61"
METHOD = "/vivified.config.v1.ConfigService/"
SCHEMA = [
    {
        "name": "smtp_host",
        "type": "CONFIG_FIELD_TYPE_STRING",
        "default_value": "localhost",
        "description": "mail relay",
    },
    {"name": "smtp_port", "type": "CONFIG_FIELD_TYPE_INT", "default_value": "25"},
    {"name": "use_tls", "type": "CONFIG_FIELD_TYPE_BOOL"},
    {"name": "smtp_password", "type": "CONFIG_FIELD_TYPE_SECRET", "required": True},
]


async def _admin(core: CoreProcess, method: str, request: object) -> object:
    async with operator_channel(core) as channel:
        return await getattr(config_grpc.ConfigServiceStub(channel), method)(request, timeout=10)


async def _as_user(core: CoreProcess, token: str, method: str, request: object) -> object:
    async with bootstrap_channel(core) as channel:
        return await getattr(config_grpc.ConfigServiceStub(channel), method)(
            request, metadata=bearer(token), timeout=10
        )


def _by_key(values: object) -> dict[str, tuple[str, int]]:
    return {v.key: (v.value, v.source) for v in values}  # type: ignore[attr-defined]


def _set(plugin_id: str, key: str, value: str, reason: str = "initial setup") -> pb.SetPluginConfigValueRequest:
    return pb.SetPluginConfigValueRequest(plugin_id=plugin_id, key=key, value=value, reason=reason)


async def test_schema_history_audit_watch_and_secret_canary(core: CoreProcess) -> None:
    mailer = await admitted_plugin(core, "mailer", config=SCHEMA)
    other = await admitted_plugin(core, "other-plugin")

    async with plugin_channel(core, mailer) as channel:
        mine = config_grpc.ConfigServiceStub(channel)
        first = await mine.GetMyConfig(pb.GetMyConfigRequest(), timeout=10)
        assert _by_key(first.values) == {
            "smtp_host": ("localhost", pb.CONFIG_VALUE_SOURCE_DEFAULT),
            "smtp_port": ("25", pb.CONFIG_VALUE_SOURCE_DEFAULT),
            "use_tls": ("", pb.CONFIG_VALUE_SOURCE_UNSET),
            "smtp_password": ("", pb.CONFIG_VALUE_SOURCE_UNSET),
        }
        assert list(first.missing_keys) == ["smtp_password"]

        # The watch stream sends the configuration at once, then after each change.
        watch = mine.WatchMyConfig(pb.WatchMyConfigRequest(), timeout=30)
        opened = await watch.read()
        assert _by_key(opened.config.values)["smtp_port"] == ("25", pb.CONFIG_VALUE_SOURCE_DEFAULT)

        # Schema validation: an unknown key and a mistyped value; no reason.
        unknown = await expect_error(_admin(core, "SetPluginConfigValue", _set("mailer", "smtp_hots", "x")))
        assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(unknown).reason == "CONFIG_INVALID"
        assert (
            "no config key 'smtp_hots'; known keys: smtp_host, smtp_port, use_tls, smtp_password" in unknown.details()
        )
        assert len(audit_rows(core, action=METHOD + "SetPluginConfigValue", reason="CONFIG_INVALID")) == 1
        typed = await expect_error(_admin(core, "SetPluginConfigValue", _set("mailer", "smtp_port", "2five")))
        assert error_info(typed).reason == "CONFIG_INVALID" and "64-bit decimal integer" in typed.details()
        unreasoned = await expect_error(_admin(core, "SetPluginConfigValue", _set("mailer", "use_tls", "true", " ")))
        assert error_info(unreasoned).reason == "INVALID_REQUEST"
        missing = await expect_error(_admin(core, "GetPluginConfig", pb.GetPluginConfigRequest(plugin_id="nope")))
        assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing).reason == "PLUGIN_NOT_FOUND"

        await _admin(core, "SetPluginConfigValue", _set("mailer", "smtp_port", "587", "relay moved to submission"))
        changed = await asyncio.wait_for(watch.read(), 10)
        assert _by_key(changed.config.values)["smtp_port"] == ("587", pb.CONFIG_VALUE_SOURCE_ADMIN)

        # The canary secret: masked in the admin answer, clear in the owner's reads and watch.
        answer = await _admin(
            core, "SetPluginConfigValue", _set("mailer", "smtp_password", CANARY, "rotated relay password")
        )
        assert answer.value.value == "********" and answer.value.source == pb.CONFIG_VALUE_SOURCE_ADMIN  # type: ignore[attr-defined]
        pushed = await asyncio.wait_for(watch.read(), 10)
        assert _by_key(pushed.config.values)["smtp_password"] == (CANARY, pb.CONFIG_VALUE_SOURCE_ADMIN)
        watch.cancel()
        own = await mine.GetMyConfig(pb.GetMyConfigRequest(), timeout=10)
        assert _by_key(own.values)["smtp_password"][0] == CANARY and not own.missing_keys
        await _admin(core, "SetPluginConfigValue", _set("mailer", "smtp_password", CANARY + "-2", "second rotation"))

    listed = await _admin(core, "GetPluginConfig", pb.GetPluginConfigRequest(plugin_id="mailer"))
    values = {v.key: v for v in listed.values}  # type: ignore[attr-defined]
    assert values["smtp_password"].value == "********" and values["smtp_port"].value == "587"
    assert values["smtp_port"].update_actor == "operator:admin"

    history = await _admin(core, "ListPluginConfigHistory", pb.ListPluginConfigHistoryRequest(plugin_id="mailer"))
    rows = [(c.key, c.old_value, c.new_value, c.change_actor, c.reason) for c in history.changes]  # type: ignore[attr-defined]
    assert rows == [
        ("smtp_password", "********", "********", "operator:admin", "second rotation"),
        ("smtp_password", "", "********", "operator:admin", "rotated relay password"),
        ("smtp_port", "", "587", "operator:admin", "relay moved to submission"),
    ]
    audited = audit_rows(core, action=METHOD + "SetPluginConfigValue", outcome="OK")
    assert len(audited) == 3 and all(r.actor == "operator:admin" and r.resource == "plugin/mailer" for r in audited)
    assert '"change_reason":"rotated relay password"' in audited[1].detail
    assert '"key":"smtp_password"' in audited[1].detail

    # Another plugin cannot read it: refused alike for an existing and a missing plugin (C4).
    async with plugin_channel(core, other) as channel:
        theirs = config_grpc.ConfigServiceStub(channel)
        foreign = await expect_error(theirs.GetPluginConfig(pb.GetPluginConfigRequest(plugin_id="mailer"), timeout=10))
        absent = await expect_error(theirs.GetPluginConfig(pb.GetPluginConfigRequest(plugin_id="ghost"), timeout=10))
        assert foreign.code() == absent.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(foreign).reason == error_info(absent).reason == "POLICY_DENIED"
        assert foreign.details() == absent.details()
        assert len(audit_rows(core, action=METHOD + "GetPluginConfig", actor="plugin:other-plugin")) == 2
        own_other = await theirs.GetMyConfig(pb.GetMyConfigRequest(), timeout=10)
        assert list(own_other.values) == [] and CANARY not in str(own_other)

    # Disabling the plugin ends its watch stream at once.
    async with plugin_channel(core, mailer) as channel:
        watch = config_grpc.ConfigServiceStub(channel).WatchMyConfig(pb.WatchMyConfigRequest(), timeout=30)
        await watch.read()
        async with operator_channel(core) as admin_channel:
            await admin_grpc.PluginAdminServiceStub(admin_channel).DisablePlugin(
                admin_pb.DisablePluginRequest(plugin_id="mailer", reason="test"), timeout=10
            )
        ended = await expect_error(asyncio.wait_for(watch.read(), 10))
        assert ended.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(ended).reason == "PLUGIN_DISABLED"

    # The canary is sealed at rest and absent from audit rows and the core's log.
    database = b"".join(p.read_bytes() for p in core.data_dir.glob("vivified.db*"))
    assert CANARY.encode() not in database
    everything = "\n".join(repr(tuple(r)) for r in audit_rows(core)) + core.log()
    assert CANARY not in everything


async def _config_manager_token(core: CoreProcess, tmp: pathlib.Path) -> str:
    """An `admin` role user (holds config_manager); MFA enrolment is forced."""
    create_admin(core, "cfg-admin", PASSWORD, tmp)
    first = await login(core, "cfg-admin", PASSWORD)
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
    )
    return confirmed.tokens.access_token  # type: ignore[no-any-return]


async def test_viewer_refused_config_manager_allowed(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    await admitted_plugin(core, "relay", config=SCHEMA)
    async with operator_channel(core) as channel:
        viewer_user = (
            await users_grpc.UserAdminServiceStub(channel).CreateUser(
                users_pb.CreateUserRequest(username="cfg-viewer", password=PASSWORD, roles=["viewer"]), timeout=10
            )
        ).user
    viewer = (await login(core, "cfg-viewer", PASSWORD)).tokens.access_token

    for method, request in (
        ("SetPluginConfigValue", _set("relay", "smtp_port", "2525")),
        ("GetPluginConfig", pb.GetPluginConfigRequest(plugin_id="relay")),
    ):
        denied = await expect_error(_as_user(core, viewer, method, request))
        info = error_info(denied)
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-config-admin")
        assert len(audit_rows(core, action=METHOD + method, actor=f"user:{viewer_user.user_id}")) == 1
    # A user is no plugin: GetMyConfig is refused too.
    mine = await expect_error(_as_user(core, viewer, "GetMyConfig", pb.GetMyConfigRequest()))
    assert mine.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(mine).reason == "POLICY_DENIED"

    token = await _config_manager_token(core, tmp_path)
    done = await _as_user(core, token, "SetPluginConfigValue", _set("relay", "smtp_port", "2525", "staging relay"))
    actor = done.value.update_actor  # type: ignore[attr-defined]
    assert actor.startswith("user:usr_")
    history = await _as_user(
        core, token, "ListPluginConfigHistory", pb.ListPluginConfigHistoryRequest(plugin_id="relay")
    )
    assert [(c.change_actor, c.reason) for c in history.changes] == [(actor, "staging relay")]  # type: ignore[attr-defined]
    rows = audit_rows(core, action=METHOD + "SetPluginConfigValue", actor=actor)
    assert len(rows) == 1 and rows[0].outcome == "OK" and '"change_reason":"staging relay"' in rows[0].detail


def _config_cli(core: CoreProcess, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "config", "plugin", "--data-dir", str(core.data_dir), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )


async def test_cli_get_set_history(core: CoreProcess) -> None:
    await admitted_plugin(core, "cli-mailer", config=SCHEMA)
    done = _config_cli(core, "set", "cli-mailer", "smtp_port", "465", "--reason", "implicit TLS")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["smtp_port", "465", "int", "admin"]
    secret = _config_cli(
        core, "set", "cli-mailer", "smtp_password", "--value-stdin", "--reason", "new relay", stdin=CANARY + "\n"
    )
    assert secret.returncode == 0, secret.stderr
    shown = _config_cli(core, "get", "cli-mailer")
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()}
    assert rows["smtp_password"][:3] == ["********", "secret", "admin"]
    assert rows["smtp_host"] == ["localhost", "string", "default"]
    assert rows["use_tls"] == ["(unset)", "bool", "unset"]
    history = _config_cli(core, "history", "cli-mailer")
    lines = history.stdout.splitlines()
    assert len(lines) == 2 and "smtp_password (none) -> ******** by operator:admin: new relay" in lines[0]
    assert "smtp_port (none) -> 465 by operator:admin: implicit TLS" in lines[1]
    refused = _config_cli(core, "set", "cli-mailer", "smtp_hots", "x", "--reason", "typo")
    assert refused.returncode == 1
    assert "no config key 'smtp_hots'; known keys: smtp_host" in refused.stderr and "[CONFIG_INVALID]" in refused.stderr
    everything = "".join(r.stdout + r.stderr for r in (done, secret, shown, history, refused))
    assert CANARY not in everything
