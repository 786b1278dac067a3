"""The `vivified` CLI against a running core with `VIVIFIED_API_KEY`: the
command acts as the key's user on the bootstrap port (no operator certificate
in its data dir), so the core's policy and audit see that user; a viewer's key
is refused with a clear error and a non-zero exit."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from support.clients import admitted_plugin, audit_rows, bootstrap_channel, operator_channel
from support.processes import CoreProcess, clean_env, run_cli, run_vivified
from support.users import bearer, login, users_pb
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

PASSWORD = "CANARY-cli-key-pw-77d0a3"
LIST_PLUGINS = "/vivified.admin.v1.PluginAdminService/ListPlugins"


async def _api_key(core: CoreProcess, username: str, role: str, scopes: list[str]) -> tuple[str, str]:
    """A new user with `role`, signed in, creates a key with `scopes`."""
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=[role]), timeout=10
        )
    token = (await login(core, username, PASSWORD)).tokens.access_token
    async with bootstrap_channel(core) as channel:
        reply = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            keys_pb.CreateApiKeyRequest(name="cli", scopes=scopes, ttl_seconds=3600), metadata=bearer(token), timeout=10
        )
    return str(reply.api_key), str(created.user.user_id)


def _cli(core: CoreProcess, tmp: pathlib.Path, key: str, *args: str) -> Any:
    """Run the CLI from an empty data dir (no operator certificate) with the key."""
    empty = tmp / "client"
    empty.mkdir(exist_ok=True)
    env = clean_env(VIVIFIED_API_KEY=key, VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"))
    command, verb, *rest = args
    where, address = ["--data-dir", str(empty)], ["--core", core.bootstrap_address]
    # `--core` belongs to `plugins`/`events`, and to `audit query`/`users list|roles`.
    if command in ("audit", "users"):
        argv = [command, *where, verb, *address, *rest]
    else:
        argv = [command, *where, *address, verb, *rest]
    return run_vivified(*argv, env=env)


async def test_plugin_manager_key_lists_plugins_events_and_audit(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    assert core.trust_domain == "vivified.local"
    await admitted_plugin(core, "listed-plugin")
    key, user_id = await _api_key(core, "olga", "operator", ["plugin_manager", "audit_viewer", "viewer"])

    listed = _cli(core, tmp_path, key, "plugins", "list")
    assert listed.returncode == 0, listed.stderr
    assert "listed-plugin" in listed.stdout and "active" in listed.stdout
    row = [r for r in audit_rows(core, actor=f"user:{user_id}") if r.action == LIST_PLUGINS][-1]
    assert row.outcome == "OK" and "api_key_id" in json.loads(row.detail)

    subscriptions = _cli(core, tmp_path, key, "events", "subscriptions")
    assert subscriptions.returncode == 0, subscriptions.stderr

    queried = _cli(core, tmp_path, key, "audit", "query", "--actor", f"user:{user_id}", "--json")
    assert queried.returncode == 0, queried.stderr
    actions = [r["action"] for r in json.loads(queried.stdout)["records"]]
    assert LIST_PLUGINS in actions and "/vivified.admin.v1.EventAdminService/ListSubscriptions" in actions

    roles = _cli(core, tmp_path, key, "users", "roles")
    assert roles.returncode == 0, roles.stderr
    assert any(line.split()[:2] == ["phi_handler", "yes"] for line in roles.stdout.splitlines())
    # operator's traits hold no user_manager: listing users is refused for the key ...
    users = _cli(core, tmp_path, key, "users", "list")
    assert users.returncode == 1 and "[POLICY_DENIED]" in users.stderr
    # ... and allowed for the local operator certificate (no key set).
    local = run_cli(core, "users", "list")
    assert local.returncode == 0, local.stderr
    assert any(line.split()[1:3] == ["olga", "active"] for line in local.stdout.splitlines())


async def test_viewer_key_is_refused_with_a_clear_error(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    key, user_id = await _api_key(core, "vic", "viewer", ["viewer"])
    refused = _cli(core, tmp_path, key, "plugins", "list")
    assert refused.returncode == 1
    assert "error: PERMISSION_DENIED" in refused.stderr and "[POLICY_DENIED]" in refused.stderr
    rows = [r for r in audit_rows(core, actor=f"user:{user_id}") if r.action == LIST_PLUGINS]
    assert [(r.decision, r.reason, r.rule_id) for r in rows] == [("deny", "POLICY_DENIED", "user-plugin-admin")]

    audit = _cli(core, tmp_path, key, "audit", "query")
    assert audit.returncode == 1 and "[POLICY_DENIED]" in audit.stderr

    # The config commands act as the key's user too, never silently as the local operator.
    env = clean_env(VIVIFIED_API_KEY=key, VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"))
    where = ["--data-dir", str(tmp_path / "client"), "--core", core.bootstrap_address]
    for argv in (["config", "plugin", *where, "get", "example-echo"], ["config", "core", *where, "list"]):
        config = run_vivified(*argv, env=env)
        assert config.returncode == 1 and "[POLICY_DENIED]" in config.stderr, config.stderr
    config_rows = [r for r in audit_rows(core, actor=f"user:{user_id}") if "ConfigService" in r.action]
    assert [(r.decision, r.rule_id) for r in config_rows] == [("deny", "user-config-admin")] * 2

    forged = _cli(core, tmp_path, key[:-4] + "AAAA", "plugins", "list")
    assert forged.returncode == 1 and "error: UNAUTHENTICATED" in forged.stderr and "[API_KEY_INVALID]" in forged.stderr
