"""Onboarding in core identity, on a real core process: an administrator
invites a person (no password), the core keeps only the activation token's
hash and publishes UserCreated/UserUpdated through the event bus's audited
path; the person activates once, and the role's MFA rules apply at the first
sign-in. A used, expired or unknown token gets one refusal (code, reason,
one audit record each). `vivified users create` does it from the CLI, as the
operator or as a `user_manager`'s API key; a viewer's key is refused."""

from __future__ import annotations

import hashlib
import json
import pathlib
import time

import grpc
import pytest
import sqlalchemy as sa

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.processes import CoreProcess, clean_env, run_cli, run_vivified
from support.users import auth_call, auth_pb, bearer, code_at, create_admin, expect_error, login, users_pb
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = pytest.mark.asyncio

AUTH = "/vivified.identity.v1.AuthService/"
USERS = "/vivified.identity.v1.UserAdminService/"
NEW_PASSWORD = "CANARY-first-pw-4d1c9e0b"


async def _invite(core: CoreProcess, username: str, roles: list[str], **fields: str) -> users_pb.CreateUserResponse:
    async with operator_channel(core) as channel:
        reply: users_pb.CreateUserResponse = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, roles=roles, **fields), timeout=10
        )
    return reply


async def _activate(core: CoreProcess, token: str, password: str = NEW_PASSWORD) -> object:
    return await auth_call(
        core, "ActivateAccount", auth_pb.ActivateAccountRequest(activation_token=token, new_password=password)
    )


def _users_row(core: CoreProcess, user_id: str) -> sa.Row[object]:
    engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
    try:
        table = sa.Table("users", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            return conn.execute(sa.select(table).where(table.c.user_id == user_id)).one()
    finally:
        engine.dispose()


def _expire(core: CoreProcess, user_id: str) -> None:
    """As if the token's lifetime had passed (the core's clock is the system's)."""
    engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE users SET activation_expires_at = :t WHERE user_id = :u"),
                {"t": int(time.time()) - 1, "u": user_id},
            )
    finally:
        engine.dispose()


def _refusals(core: CoreProcess, why: str) -> list[sa.Row[object]]:
    rows = audit_rows(core, action=AUTH + "ActivateAccount", reason="ACTIVATION_TOKEN_INVALID")
    return [r for r in rows if json.loads(r.detail).get("why") == why]


async def test_invited_user_activates_once_then_signs_in(core: CoreProcess) -> None:
    created = await _invite(core, "ada", ["viewer"], email="Ada@Example.COM", display_name="Ada L")
    user = created.user
    assert user.invited and (user.email, user.display_name) == ("Ada@example.com", "Ada L")
    token = created.activation_token
    assert token.startswith("vat_") and len(token) == 47
    assert abs(created.activation_expire_time.seconds - (time.time() + 24 * 3600)) < 60

    # Only the token's hash is stored; no password works before activation.
    row = _users_row(core, user.user_id)
    assert row.activation_sha256 == hashlib.sha256(token.encode()).hexdigest() and row.password_hash == ""
    assert token not in (core.data_dir / "vivified.db").read_bytes().decode("latin-1")
    refused = await expect_error(login(core, "ada", NEW_PASSWORD))
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(refused).reason == "LOGIN_FAILED"
    assert json.loads(audit_rows(core, action=AUTH + "Login", reason="LOGIN_FAILED")[-1].detail)["why"] == "invited"

    # The core published UserCreated under the CreateUser call's trace, one audit record.
    (create_record,) = [
        r for r in audit_rows(core, action=USERS + "CreateUser") if f"user/{user.user_id}" == r.resource
    ]
    published = [
        r for r in audit_rows(core, action="event.publish", actor="core:core") if r.trace_id == create_record.trace_id
    ]
    assert [r.resource for r in published] == ["event/vivified.events.v1.UserCreated"]

    activated = await _activate(core, token)
    assert (activated.user_id, activated.username) == (user.user_id, "ada")
    signed_in = await login(core, "ada", NEW_PASSWORD)
    assert signed_in.step == auth_pb.LOGIN_STEP_COMPLETE  # viewer: no MFA required
    (activate_record,) = audit_rows(core, action=AUTH + "ActivateAccount", resource=f"user/{user.user_id}")
    updated = [
        r for r in audit_rows(core, action="event.publish", actor="core:core") if r.trace_id == activate_record.trace_id
    ]
    assert [r.resource for r in updated] == ["event/vivified.events.v1.UserUpdated"]
    assert NEW_PASSWORD not in activate_record.detail and token not in activate_record.detail

    # Used: the same refusal as any bad token, one audit record saying which.
    again = await expect_error(_activate(core, token, "CANARY-second-pw-0a9b8c7d"))
    assert again.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(again).reason == "ACTIVATION_TOKEN_INVALID"
    assert len(_refusals(core, "used")) == 1
    assert (await login(core, "ada", NEW_PASSWORD)).step == auth_pb.LOGIN_STEP_COMPLETE  # password unchanged


async def test_unknown_and_expired_tokens_get_the_same_refusal(core: CoreProcess) -> None:
    unknown = await expect_error(_activate(core, "vat_" + "A" * 43))
    created = await _invite(core, "bert", ["viewer"])
    _expire(core, created.user.user_id)
    expired = await expect_error(_activate(core, created.activation_token))
    for err in (unknown, expired):
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(err).reason == "ACTIVATION_TOKEN_INVALID"
    assert unknown.details() == expired.details()
    assert len(_refusals(core, "unknown")) == 1 and len(_refusals(core, "expired")) == 1
    assert _users_row(core, created.user.user_id).invited  # still invited: nothing changed


async def test_invited_admin_must_enrol_mfa_at_first_sign_in(core: CoreProcess) -> None:
    created = await _invite(core, "carla", ["admin"], email="carla@example.com")
    await _activate(core, created.activation_token)
    first = await login(core, "carla", NEW_PASSWORD)
    assert first.step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED and not first.HasField("tokens")


async def test_weak_first_password_is_refused_and_the_token_still_works(core: CoreProcess) -> None:
    created = await _invite(core, "dora", ["viewer"])
    short = await expect_error(_activate(core, created.activation_token, "short"))
    assert short.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(short).reason == "PASSWORD_POLICY"
    await _activate(core, created.activation_token)


async def _user_manager_key(core: CoreProcess, tmp: pathlib.Path) -> str:
    """An admin (MFA enrolled) creates an API key scoped to user_manager."""
    create_admin(core, "keymaster", "CANARY-keymaster-pw-3e3e3e", tmp)
    first = await login(core, "keymaster", "CANARY-keymaster-pw-3e3e3e")
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
    )
    async with bootstrap_channel(core) as channel:
        reply = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            keys_pb.CreateApiKeyRequest(name="hr", scopes=["user_manager"], ttl_seconds=3600),
            metadata=bearer(confirmed.tokens.access_token),
            timeout=10,
        )
    return str(reply.api_key)


def _cli_with_key(core: CoreProcess, tmp: pathlib.Path, key: str, *args: str) -> object:
    empty = tmp / "client"
    empty.mkdir(exist_ok=True)
    env = clean_env(VIVIFIED_API_KEY=key, VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"))
    return run_vivified("users", "--data-dir", str(empty), "create", "--core", core.bootstrap_address, *args, env=env)


async def test_cli_users_create_as_operator_and_as_user_manager_key(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    result = run_cli(
        core,
        "users",
        "create",
        "--username",
        "ada.cli",
        "--email",
        "ada@example.com",
        "--display-name",
        "Ada L",
        "--role",
        "viewer",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["user"]["invited"] and reply["user"]["email"] == "ada@example.com"
    assert "activation_token" not in reply  # a credential: printed only when asked
    assert (
        len(
            audit_rows(
                core, action=USERS + "CreateUser", actor="operator:admin", resource=f"user/{reply['user']['user_id']}"
            )
        )
        == 1
    )

    key = await _user_manager_key(core, tmp_path)
    made = _cli_with_key(core, tmp_path, key, "--username", "ben.cli", "--role", "viewer", "--print-activation-token")
    assert made.returncode == 0, made.stderr  # type: ignore[attr-defined]
    lines = made.stdout.splitlines()  # type: ignore[attr-defined]
    assert "invited (activation pending)" in lines[0]
    token = next(line.split(": ", 1)[1] for line in lines if line.startswith("activation token: "))
    assert (await _activate(core, token)).username == "ben.cli"

    # A viewer's key may not create people: exit 1, the reason, one audit record.
    viewer = await _invite(core, "vic", ["viewer"])
    await _activate(core, viewer.activation_token)
    token_v = (await login(core, "vic", NEW_PASSWORD)).tokens.access_token
    async with bootstrap_channel(core) as channel:
        vkey = (
            await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
                keys_pb.CreateApiKeyRequest(name="v", scopes=["viewer"], ttl_seconds=3600),
                metadata=bearer(token_v),
                timeout=10,
            )
        ).api_key
    denied = _cli_with_key(core, tmp_path, vkey, "--username", "eve", "--role", "admin")
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr and "[POLICY_DENIED]" in denied.stderr  # type: ignore[attr-defined]
    assert (
        len(audit_rows(core, action=USERS + "CreateUser", actor=f"user:{viewer.user.user_id}", reason="POLICY_DENIED"))
        == 1
    )
