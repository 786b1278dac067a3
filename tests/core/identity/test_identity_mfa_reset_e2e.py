"""ResetUserMfa through a real core process and its real chain (mTLS bootstrap
port, bearer tokens, default-deny policy, audit): an admin removes a user's
second factor, the user's sessions end and the next sign-in must enrol a new
authenticator; the old secret and backup codes are gone. A viewer is refused
(PERMISSION_DENIED, one deny record), an unknown user is NOT_FOUND, a missing
reason INVALID_ARGUMENT, and the operator CLI resets too."""

from __future__ import annotations

import json
import pathlib
import time

import grpc
import pytest
import sqlalchemy as sa

from support.clients import audit_rows, error_info
from support.processes import CoreProcess, run_cli
from support.users import auth_call, auth_pb, code_at, create_admin, expect_error, login, users_call, users_pb

pytestmark = pytest.mark.asyncio

ADMIN_PASSWORD = "CANARY-reset-admin-pw-3c9d"
USER_PASSWORD = "CANARY-reset-user-pw-8e1a"
VIEWER_PASSWORD = "CANARY-reset-viewer-pw-64f0"
USERS = "/vivified.identity.v1.UserAdminService/"
RESET = USERS + "ResetUserMfa"


def _backup_codes(core: CoreProcess, user_id: str) -> int:
    """How many backup codes the database holds for the user."""
    engine = sa.create_engine(f"sqlite+pysqlite:///{core.data_dir / 'vivified.db'}")
    try:
        table = sa.Table("mfa_backup_codes", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            return len(conn.execute(sa.select(table).where(table.c.user_id == user_id)).all())
    finally:
        engine.dispose()


async def _enrol(core: CoreProcess, username: str, password: str, at: float) -> tuple[auth_pb.Tokens, str, list[str]]:
    """Sign in when enrolment is forced: enrol, confirm with a code at `at`."""
    first = await login(core, username, password)
    assert first.step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED, first
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    confirmed = await auth_call(
        core, "ConfirmMfa", auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, at))
    )
    return confirmed.tokens, enrol.secret, list(confirmed.backup_codes)


async def test_reset_mfa_forces_enrolment_and_is_audited(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    now = time.time()
    create_admin(core, "reset-admin", ADMIN_PASSWORD, tmp_path)
    admin, _, _ = await _enrol(core, "reset-admin", ADMIN_PASSWORD, now)
    admin_token = admin.access_token
    me = (await auth_call(core, "WhoAmI", auth_pb.WhoAmIRequest(), admin_token)).user_id

    # phi_handler requires MFA (roles.json), so its sign-in forces enrolment.
    pia = (
        await users_call(
            core,
            "CreateUser",
            users_pb.CreateUserRequest(username="pia", password=USER_PASSWORD, roles=["phi_handler"]),
            admin_token,
        )
    ).user
    await users_call(
        core,
        "CreateUser",
        users_pb.CreateUserRequest(username="vic", password=VIEWER_PASSWORD, roles=["viewer"]),
        admin_token,
    )
    pia_tokens, old_secret, _ = await _enrol(core, "pia", USER_PASSWORD, now)
    assert _backup_codes(core, pia.user_id) == 10
    assert (await login(core, "pia", USER_PASSWORD)).step == auth_pb.LOGIN_STEP_MFA_REQUIRED

    # A viewer: PERMISSION_DENIED with the rule, exactly one deny record, and no change.
    viewer = await login(core, "vic", VIEWER_PASSWORD)
    assert viewer.step == auth_pb.LOGIN_STEP_COMPLETE
    vic_id = (await auth_call(core, "WhoAmI", auth_pb.WhoAmIRequest(), viewer.tokens.access_token)).user_id
    whoami = await auth_call(core, "WhoAmI", auth_pb.WhoAmIRequest(), viewer.tokens.access_token)
    assert RESET not in whoami.allowed_methods
    assert RESET in (await auth_call(core, "WhoAmI", auth_pb.WhoAmIRequest(), admin_token)).allowed_methods
    denied = await expect_error(
        users_call(
            core,
            "ResetUserMfa",
            users_pb.ResetUserMfaRequest(user_id=pia.user_id, reason="not mine to reset"),
            viewer.tokens.access_token,
        )
    )
    info = error_info(denied)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-admin")
    deny_rows = audit_rows(core, action=RESET, actor=f"user:{vic_id}")
    assert [(r.decision, r.outcome, r.reason) for r in deny_rows] == [("deny", "PERMISSION_DENIED", "POLICY_DENIED")]
    assert (
        await users_call(core, "GetUser", users_pb.GetUserRequest(user_id=pia.user_id), admin_token)
    ).user.mfa_enrolled

    # An unknown user: NOT_FOUND with the stable reason, one record.
    missing = await expect_error(
        users_call(
            core,
            "ResetUserMfa",
            users_pb.ResetUserMfaRequest(user_id="usr_000000000000000000000000", reason="lost phone"),
            admin_token,
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing).reason == "USER_NOT_FOUND"
    assert len(audit_rows(core, action=RESET, outcome="NOT_FOUND", resource="user/usr_000000000000000000000000")) == 1

    # No reason: INVALID_ARGUMENT, nothing reset.
    bare = await expect_error(
        users_call(core, "ResetUserMfa", users_pb.ResetUserMfaRequest(user_id=pia.user_id, reason=" "), admin_token)
    )
    assert bare.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(bare).reason == "INVALID_REQUEST"

    # The reset: the user comes back without MFA, and the record names who, whom and why.
    reset = await users_call(
        core,
        "ResetUserMfa",
        users_pb.ResetUserMfaRequest(user_id=pia.user_id, reason="lost her phone; identity checked by call-back"),
        admin_token,
    )
    assert not reset.user.mfa_enrolled and reset.user.username == "pia"
    ok_rows = audit_rows(core, action=RESET, outcome="OK")
    assert len(ok_rows) == 1
    row = ok_rows[0]
    assert (row.actor, row.resource, row.decision) == (f"user:{me}", f"user/{pia.user_id}", "allow")
    detail = json.loads(row.detail)
    assert detail["change_reason"] == "lost her phone; identity checked by call-back"
    assert detail["had_mfa"] == "true"

    # Her session signed in with the old factor has ended.
    gone = await expect_error(
        users_call(core, "GetUser", users_pb.GetUserRequest(user_id=pia.user_id), pia_tokens.access_token)
    )
    assert error_info(gone).reason == "SESSION_REVOKED"

    # The backup codes are gone from the database, not merely unusable for now.
    assert _backup_codes(core, pia.user_id) == 0

    # The next sign-in must enrol again, with a new secret.
    again = await login(core, "pia", USER_PASSWORD)
    assert again.step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=again.mfa_token))
    assert enrol.secret != old_secret
    # A code of the step just used before the reset is accepted: the old secret's last step went with it.
    confirmed = await auth_call(
        core, "ConfirmMfa", auth_pb.ConfirmMfaRequest(mfa_token=again.mfa_token, code=code_at(enrol.secret, now))
    )
    assert confirmed.tokens.access_token and len(confirmed.backup_codes) == 10
    assert (await login(core, "pia", USER_PASSWORD)).step == auth_pb.LOGIN_STEP_MFA_REQUIRED

    # The operator resets from the CLI (mTLS, no token): the same RPC, audited as the operator.
    result = run_cli(core, "users", "reset-mfa", "--user-id", pia.user_id, "--reason", "second phone lost")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pia" in result.stdout and "must enrol" in result.stdout
    cli_rows = audit_rows(core, action=RESET, outcome="OK")
    assert len(cli_rows) == 2 and cli_rows[1].actor.startswith("operator:")
    assert (await login(core, "pia", USER_PASSWORD)).step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED
    unknown = run_cli(core, "users", "reset-mfa", "--user-id", "usr_000000000000000000000000", "--reason", "x")
    assert unknown.returncode != 0 and "USER_NOT_FOUND" in unknown.stderr

    # Every record above chains: the log verifies.
    verified = run_cli(core, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
