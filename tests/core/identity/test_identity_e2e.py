"""People sign in to a real core process over its bootstrap port: first admin
from the CLI, forced MFA enrolment, TOTP replay, bearer tokens through the real
chain, trait-gated user administration, BOLA, logout and disable (B5, B10, C4)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import time

import grpc
import pytest

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.processes import CoreProcess, run_cli
from support.users import (
    api_key_secret,
    auth_call,
    auth_pb,
    bearer,
    code_at,
    create_admin,
    expect_error,
    login,
    users_call,
    users_pb,
)
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = pytest.mark.asyncio

ADMIN_PASSWORD = "CANARY-admin-pw-7f3e9a1c"
VIEWER_PASSWORD = "CANARY-viewer-pw-51b2d8e0"
AUTH = "/vivified.identity.v1.AuthService/"
USERS = "/vivified.identity.v1.UserAdminService/"
PROTO = pathlib.Path(__file__).resolve().parents[3] / "proto"


def _rows(core: CoreProcess, **where: str) -> list[object]:
    return audit_rows(core, **where)


async def _admin_tokens(core: CoreProcess, tmp: pathlib.Path) -> tuple[auth_pb.Tokens, str]:
    """Create the admin with the CLI, then sign in: enrolment is forced."""
    create_admin(core, "root-admin", ADMIN_PASSWORD, tmp)
    first = await login(core, "root-admin", ADMIN_PASSWORD)
    assert first.step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED
    assert not first.HasField("tokens")
    # The MFA token is good for nothing but the MFA calls.
    err = await expect_error(users_call(core, "ListUsers", users_pb.ListUsersRequest(), first.mfa_token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "TOKEN_INVALID"
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    assert enrol.provisioning_uri.startswith("otpauth://totp/vivified-core%3Aroot-admin?secret=")
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
    )
    assert len(confirmed.backup_codes) == 10 and confirmed.tokens.access_token
    return confirmed.tokens, enrol.secret


async def test_sign_in_admin_users_and_refusals(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    tokens, secret = await _admin_tokens(core, tmp_path)

    # A second login needs the code; the code just used for enrolment is a replay.
    again = await login(core, "root-admin", ADMIN_PASSWORD)
    assert again.step == auth_pb.LOGIN_STEP_MFA_REQUIRED
    replay = await expect_error(
        auth_call(
            core, "VerifyMfa", auth_pb.VerifyMfaRequest(mfa_token=again.mfa_token, code=code_at(secret, time.time()))
        )
    )
    assert replay.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(replay).reason == "MFA_CODE_INVALID"
    assert len(_rows(core, action=AUTH + "VerifyMfa", reason="MFA_CODE_INVALID")) == 1
    verified = await auth_call(
        core, "VerifyMfa", auth_pb.VerifyMfaRequest(mfa_token=again.mfa_token, code=code_at(secret, time.time() + 30))
    )
    admin_token = verified.tokens.access_token

    created = await users_call(
        core,
        "CreateUser",
        users_pb.CreateUserRequest(username="vera", password=VIEWER_PASSWORD, roles=["viewer"]),
        admin_token,
    )
    vera = created.user
    assert vera.traits == ["viewer"] and not vera.mfa_enrolled
    listed = await users_call(core, "ListUsers", users_pb.ListUsersRequest(), admin_token)
    assert [u.username for u in listed.users] == ["root-admin", "vera"]
    admin_id = listed.users[0].user_id

    # A viewer signs in without MFA (not required for viewer traits) ...
    viewer = await login(core, "vera", VIEWER_PASSWORD)
    assert viewer.step == auth_pb.LOGIN_STEP_COMPLETE
    viewer_token = viewer.tokens.access_token

    # ... is refused the admin service: status, reason, rule, one audit record.
    denied = await expect_error(users_call(core, "ListUsers", users_pb.ListUsersRequest(), viewer_token))
    info = error_info(denied)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-admin")
    assert len(_rows(core, action=USERS + "ListUsers", actor=f"user:{vera.user_id}")) == 1

    # BOLA: another user's id and a missing id look the same to a viewer.
    own = await users_call(core, "GetUser", users_pb.GetUserRequest(user_id=vera.user_id), viewer_token)
    assert own.user.username == "vera"
    other = await expect_error(users_call(core, "GetUser", users_pb.GetUserRequest(user_id=admin_id), viewer_token))
    missing = await expect_error(
        users_call(core, "GetUser", users_pb.GetUserRequest(user_id="usr_000000000000000000000000"), viewer_token)
    )
    assert other.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert other.details() == missing.details()
    assert error_info(other).reason == error_info(missing).reason == "USER_NOT_FOUND"
    assert len(_rows(core, action=USERS + "GetUser", actor=f"user:{vera.user_id}", outcome="NOT_FOUND")) == 2

    # A bad bearer token: UNAUTHENTICATED, stable reason, one audit record.
    forged = viewer_token[:-4] + ("AAAA" if not viewer_token.endswith("AAAA") else "BBBB")
    bad = await expect_error(users_call(core, "GetUser", users_pb.GetUserRequest(user_id=vera.user_id), forged))
    assert bad.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(bad).reason == "TOKEN_INVALID"
    assert len(_rows(core, action=USERS + "GetUser", reason="TOKEN_INVALID", rule_id="authentication")) == 1

    # A client certificate wins over metadata: the operator stays the operator.
    async with operator_channel(core) as channel:
        await users_grpc.UserAdminServiceStub(channel).ListUsers(
            users_pb.ListUsersRequest(), metadata=bearer(viewer_token), timeout=10
        )
    assert _rows(core, action=USERS + "ListUsers")[-1].actor.startswith("operator:")

    # Disabling the viewer ends the session at once (B5) and refuses login.
    await users_call(core, "DisableUser", users_pb.DisableUserRequest(user_id=vera.user_id), admin_token)
    gone = await expect_error(users_call(core, "GetUser", users_pb.GetUserRequest(user_id=vera.user_id), viewer_token))
    assert error_info(gone).reason == "SESSION_REVOKED"
    refused = await expect_error(login(core, "vera", VIEWER_PASSWORD))
    assert error_info(refused).reason == "LOGIN_FAILED"

    # Logout ends the admin's session; the first session is unaffected.
    await auth_call(core, "Logout", auth_pb.LogoutRequest(), admin_token)
    out = await expect_error(users_call(core, "ListUsers", users_pb.ListUsersRequest(), admin_token))
    assert error_info(out).reason == "SESSION_REVOKED"
    assert len(_rows(core, action=USERS + "ListUsers", reason="SESSION_REVOKED")) == 1
    await users_call(core, "ListUsers", users_pb.ListUsersRequest(), tokens.access_token)

    # The CLI's admin creation is audited, and the chain it shares with the running core verifies.
    created_rows = _rows(core, action="users.create-admin")
    assert len(created_rows) == 1 and created_rows[0].actor == "cli:local"
    verified_log = run_cli(core, "audit", "verify")
    assert verified_log.returncode == 0, verified_log.stdout + verified_log.stderr

    # Canary passwords never reach the audit log or the core's log.
    everything = "\n".join(repr(tuple(r)) for r in _rows(core)) + core.log()
    assert ADMIN_PASSWORD not in everything and VIEWER_PASSWORD not in everything
    assert secret not in everything and admin_token not in everything
    # The TOTP secret is sealed at rest: the database files do not hold it.
    database = b"".join(p.read_bytes() for p in core.data_dir.glob("vivified.db*"))
    assert secret.encode() not in database and ADMIN_PASSWORD.encode() not in database


def _grpcurl(core: CoreProcess, proto: str, method: str, body: dict[str, object], token: str = "") -> dict[str, object]:
    binary = shutil.which("grpcurl")
    assert binary is not None, "grpcurl is installed by the dev extra"
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [
            binary,
            "-cacert",
            str(core.operator_dir / "ca.crt"),
            "-servername",
            f"core.{core.trust_domain}",
            "-import-path",
            str(PROTO),
            "-proto",
            proto,
            *headers,
            "-d",
            json.dumps(body),
            core.bootstrap_address,
            method,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _create_admin_with_closed_stdin(core: CoreProcess, username: str) -> subprocess.CompletedProcess[str]:
    """No --password-file, no terminal (new session) and an empty stdin: the prompt gets nothing."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "users",
            "--data-dir",
            str(core.data_dir),
            "create-admin",
            "--username",
            username,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )


async def test_readme_grpcurl_sign_in(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    """The README's operator steps, verbatim in shape: CLI admin, grpcurl login, enrolment, a call."""
    create_admin(core, "gru", ADMIN_PASSWORD, tmp_path)
    auth = "vivified/identity/v1/auth.proto"
    first = _grpcurl(
        core, auth, "vivified.identity.v1.AuthService/Login", {"username": "gru", "password": ADMIN_PASSWORD}
    )
    assert first["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED"
    enrol = _grpcurl(core, auth, "vivified.identity.v1.AuthService/EnrollMfa", {"mfa_token": first["mfaToken"]})
    code = code_at(str(enrol["secret"]), time.time())
    done = _grpcurl(
        core, auth, "vivified.identity.v1.AuthService/ConfirmMfa", {"mfa_token": first["mfaToken"], "code": code}
    )
    access = done["tokens"]["accessToken"]  # type: ignore[index]
    listed = _grpcurl(
        core, "vivified/identity/v1/user_admin.proto", "vivified.identity.v1.UserAdminService/ListUsers", {}, access
    )
    assert "gru" in [u["username"] for u in listed["users"]]  # type: ignore[attr-defined]

    # No second account under the name, and no account at all without a password.
    again = run_cli(core, "users", "create-admin", "--username", "GRU", "--password-file", str(tmp_path / "gru.pw"))
    assert again.returncode == 1 and "taken" in again.stderr
    short = tmp_path / "short.pw"
    short.write_text("hunter2\n")
    weak = run_cli(core, "users", "create-admin", "--username", "weak", "--password-file", str(short))
    assert weak.returncode == 1 and "12 to 1024 characters" in weak.stderr
    prompt = _create_admin_with_closed_stdin(core, "nopass")
    assert prompt.returncode == 1 and "no password given" in prompt.stderr
    async with operator_channel(core) as channel:
        everyone = await users_grpc.UserAdminServiceStub(channel).ListUsers(users_pb.ListUsersRequest(), timeout=10)
    assert not {"weak", "nopass"} & {u.username for u in everyone.users}


async def test_refresh_family_password_change_and_plugin_admin_refusal(core: CoreProcess) -> None:
    async with operator_channel(core) as channel:
        await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username="rita", password=VIEWER_PASSWORD, roles=["viewer"]), timeout=10
        )
    first = (await login(core, "rita", VIEWER_PASSWORD)).tokens
    second = (await auth_call(core, "Refresh", auth_pb.RefreshRequest(refresh_token=first.refresh_token))).tokens
    assert second.refresh_token != first.refresh_token
    reused = await expect_error(auth_call(core, "Refresh", auth_pb.RefreshRequest(refresh_token=first.refresh_token)))
    assert reused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(reused).reason == "REFRESH_TOKEN_INVALID"
    assert len(_rows(core, action=AUTH + "Refresh", reason="REFRESH_TOKEN_INVALID")) == 1
    family = await expect_error(auth_call(core, "Refresh", auth_pb.RefreshRequest(refresh_token=second.refresh_token)))
    assert error_info(family).reason == "SESSION_REVOKED"
    ended = await expect_error(auth_call(core, "Logout", auth_pb.LogoutRequest(), second.access_token))
    assert error_info(ended).reason == "SESSION_REVOKED"

    # A viewer is refused plugin administration as well.
    token = (await login(core, "rita", VIEWER_PASSWORD)).tokens.access_token
    async with bootstrap_channel(core) as channel:
        denied = await expect_error(
            admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                admin_pb.ListPluginsRequest(), metadata=bearer(token), timeout=10
            )
        )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (error_info(denied).reason, error_info(denied).metadata["rule_id"]) == ("POLICY_DENIED", "user-plugin-admin")

    # Changing the password needs the current one and ends every session.
    wrong = await expect_error(
        auth_call(
            core,
            "ChangePassword",
            auth_pb.ChangePasswordRequest(current_password="not the password", new_password="a brand new password"),
            token,
        )
    )
    assert error_info(wrong).reason == "LOGIN_FAILED"
    await auth_call(
        core,
        "ChangePassword",
        auth_pb.ChangePasswordRequest(current_password=VIEWER_PASSWORD, new_password="a brand new password"),
        token,
    )
    stale = await expect_error(auth_call(core, "Logout", auth_pb.LogoutRequest(), token))
    assert error_info(stale).reason == "SESSION_REVOKED"
    fresh = await login(core, "rita", "a brand new password")
    assert fresh.step == auth_pb.LOGIN_STEP_COMPLETE

    # A signed-in user may turn MFA on; the next login then asks for a code.
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(), fresh.tokens.access_token)
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(code=code_at(enrol.secret, time.time())),
        fresh.tokens.access_token,
    )
    assert len(confirmed.backup_codes) == 10 and not confirmed.HasField("tokens")
    assert (await login(core, "rita", "a brand new password")).step == auth_pb.LOGIN_STEP_MFA_REQUIRED
    assert "a brand new password" not in "\n".join(repr(tuple(r)) for r in _rows(core)) + core.log()


async def test_b7_api_keys_scoped_revocable_hashed_metadata_only(core: CoreProcess) -> None:
    async with operator_channel(core) as channel:
        stub = users_grpc.UserAdminServiceStub(channel)
        otto = (
            await stub.CreateUser(
                users_pb.CreateUserRequest(username="otto", password=VIEWER_PASSWORD, roles=["operator"]), timeout=10
            )
        ).user
        await stub.CreateUser(
            users_pb.CreateUserRequest(username="una", password=VIEWER_PASSWORD, roles=["viewer"]), timeout=10
        )
    token = (await login(core, "otto", VIEWER_PASSWORD)).tokens.access_token
    una = (await login(core, "una", VIEWER_PASSWORD)).tokens.access_token

    async def keys(method: str, request: object, metadata: tuple[tuple[str, str], ...]) -> object:
        async with bootstrap_channel(core) as channel:
            return await getattr(keys_grpc.ApiKeyServiceStub(channel), method)(request, metadata=metadata, timeout=10)

    async def list_plugins(metadata: tuple[tuple[str, str], ...]) -> object:
        async with bootstrap_channel(core) as channel:
            return await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                admin_pb.ListPluginsRequest(), metadata=metadata, timeout=10
            )

    viewer_key = await keys("CreateApiKey", keys_pb.CreateApiKeyRequest(name="ro", scopes=["viewer"]), bearer(token))
    manager_key = await keys(
        "CreateApiKey", keys_pb.CreateApiKeyRequest(name="ci", scopes=["plugin_manager", "viewer"]), bearer(token)
    )
    assert manager_key.api_key.startswith(f"vk_{manager_key.key.key_id}_")
    escalate = await expect_error(
        keys("CreateApiKey", keys_pb.CreateApiKeyRequest(name="x", scopes=["user_manager"]), bearer(token))
    )
    assert escalate.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(escalate).reason == "SCOPE_NOT_HELD"
    assert len(_rows(core, reason="SCOPE_NOT_HELD")) == 1

    # Scopes decide: the plugin_manager key may list plugins, the viewer key may not.
    await list_plugins((("x-api-key", manager_key.api_key),))
    narrow = await expect_error(list_plugins((("x-api-key", viewer_key.api_key),)))
    assert (
        narrow.code() == grpc.StatusCode.PERMISSION_DENIED
        and error_info(narrow).metadata["rule_id"] == "user-plugin-admin"
    )
    assert f'"api_key_id":"{viewer_key.key.key_id}"' in _rows(core, actor=f"user:{otto.user_id}")[-1].detail

    # Only `x-api-key` carries a key: in `authorization` it is no token.
    for header in (f"Bearer {manager_key.api_key}", f"ApiKey {manager_key.api_key}"):
        wrong_place = await expect_error(list_plugins((("authorization", header),)))
        assert (
            wrong_place.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(wrong_place).reason == "TOKEN_INVALID"
        )
    both = await expect_error(list_plugins((("x-api-key", manager_key.api_key), ("authorization", f"Bearer {token}"))))
    assert error_info(both).reason == "IDENTITY_INVALID"
    # In the URL query (ASVS 14.2.1): gRPC routes on the whole :path, so a
    # query string is no method: grpc answers UNIMPLEMENTED before any handler
    # or chain layer runs (nothing is audited, as for any unknown method), and
    # the key is never read, so it acts for nobody and is nowhere recorded.
    before = len(_rows(core))
    async with bootstrap_channel(core) as channel:
        in_query = channel.unary_unary(
            f"/vivified.admin.v1.PluginAdminService/ListPlugins?x-api-key={manager_key.api_key}",
            request_serializer=admin_pb.ListPluginsRequest.SerializeToString,
            response_deserializer=admin_pb.ListPluginsResponse.FromString,
        )
        queried = await expect_error(in_query(admin_pb.ListPluginsRequest(), timeout=10))
    assert queried.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(_rows(core)) == before
    guessed = manager_key.api_key[:-6] + ("A" * 6 if not manager_key.api_key.endswith("A" * 6) else "B" * 6)
    assert error_info(await expect_error(list_plugins((("x-api-key", guessed),)))).reason == "API_KEY_INVALID"
    # A key cannot mint keys.
    minted = await expect_error(
        keys(
            "CreateApiKey",
            keys_pb.CreateApiKeyRequest(name="y", scopes=["viewer"]),
            (("x-api-key", manager_key.api_key),),
        )
    )
    assert error_info(minted).reason == "IDENTITY_MISSING"

    # BOLA: someone else's key id and an unknown id look the same.
    other = await expect_error(
        keys("RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id=manager_key.key.key_id), bearer(una))
    )
    unknown = await expect_error(
        keys("RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id="vak_" + "0" * 24), bearer(una))
    )
    assert other.code() == unknown.code() == grpc.StatusCode.NOT_FOUND and other.details() == unknown.details()

    # Revocation takes effect on the next call; one audit record for the refusal.
    await keys("RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id=manager_key.key.key_id), bearer(token))
    revoked = await expect_error(list_plugins((("x-api-key", manager_key.api_key),)))
    assert revoked.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(revoked).reason == "API_KEY_INVALID"
    assert len(_rows(core, action="/vivified.admin.v1.PluginAdminService/ListPlugins", reason="API_KEY_INVALID")) == 2
    listed = await keys("ListApiKeys", keys_pb.ListApiKeysRequest(), bearer(token))
    assert {k.key_id: k.revoked for k in listed.keys} == {viewer_key.key.key_id: False, manager_key.key.key_id: True}
    assert all(k.HasField("last_used_time") for k in listed.keys)  # both were used

    # Stored only as a hash: the raw secrets are nowhere in the database files or the logs.
    secrets_ = [api_key_secret(k.api_key) for k in (viewer_key, manager_key)]
    blobs = b"".join(p.read_bytes() for p in core.data_dir.glob("vivified.db*")) + core.log().encode()
    assert not any(s.encode() in blobs for s in secrets_)
    assert "\n".join(repr(tuple(r)) for r in _rows(core)).count(secrets_[0]) == 0
