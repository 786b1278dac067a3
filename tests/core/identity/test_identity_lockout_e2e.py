"""Lockout against a real core process: identical answers for unknown user and
wrong password (B10), lock state and the MFA throttle surviving a restart (B9,
B10), and a weak token key stopping the core at start-up (B4)."""

from __future__ import annotations

import base64
import pathlib
import statistics
import time

import grpc
import pytest

from support.clients import audit_rows, error_info, operator_channel
from support.processes import core_running, start_core
from support.users import (
    auth_call,
    auth_pb,
    code_at,
    create_admin,
    expect_error,
    login,
    users_pb,
)
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = pytest.mark.asyncio
PASSWORD = "CANARY-lockout-pw-0c9d2e"
LOGIN = "/vivified.identity.v1.AuthService/Login"


async def _timed_failure(core, username: str, password: str) -> tuple[grpc.aio.AioRpcError, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    err = await expect_error(login(core, username, password))
    return err, time.perf_counter() - start


@pytest.mark.serial
async def test_lockout_and_mfa_throttle_survive_restart(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    with core_running(data_dir) as core:
        async with operator_channel(core) as channel:
            await users_grpc.UserAdminServiceStub(channel).CreateUser(
                users_pb.CreateUserRequest(username="lou", password=PASSWORD, roles=["viewer"]), timeout=10
            )
        # B10: unknown user and wrong password look the same, and take similar time.
        unknown, wrong, t_unknown, t_wrong = [], [], [], []
        for _ in range(2):
            err, seconds = await _timed_failure(core, "nobody-here", "some wrong password")
            unknown.append(err)
            t_unknown.append(seconds)
            err, seconds = await _timed_failure(core, "lou", "some wrong password")
            wrong.append(err)
            t_wrong.append(seconds)
        for a, b in zip(unknown, wrong, strict=True):
            assert a.code() == b.code() == grpc.StatusCode.UNAUTHENTICATED
            assert a.details() == b.details()
            assert error_info(a).SerializeToString() == error_info(b).SerializeToString()
        ratio = statistics.median(t_unknown) / statistics.median(t_wrong)
        assert 0.5 < ratio < 2.0, (t_unknown, t_wrong)
        # Three more wrong passwords: five in all, the account locks.
        for _ in range(3):
            await expect_error(login(core, "lou", "some wrong password"))
        locked = await expect_error(login(core, "lou", PASSWORD))
        assert error_info(locked).reason == "LOGIN_FAILED" and locked.details() == wrong[0].details()
        assert len(audit_rows(core, action=LOGIN, reason="LOGIN_FAILED")) == 2 + 2 + 3 + 1
        assert '"why":"locked"' in audit_rows(core, action=LOGIN)[-1].detail

        # An admin enrols MFA, then gets MFA-locked (password counter untouched).
        create_admin(core, "ada", PASSWORD, tmp_path)
        first = await login(core, "ada", PASSWORD)
        enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
        await auth_call(
            core,
            "ConfirmMfa",
            auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
        )
        pending = await login(core, "ada", PASSWORD)
        good = code_at(enrol.secret, time.time() + 30)
        bad = str((int(good) + 1) % 1_000_000).zfill(6)
        for _ in range(5):
            err = await expect_error(
                auth_call(core, "VerifyMfa", auth_pb.VerifyMfaRequest(mfa_token=pending.mfa_token, code=bad))
            )
            assert error_info(err).reason == "MFA_CODE_INVALID"

    # Restart on the same data dir: both locks are still there.
    with core_running(data_dir) as core:
        still = await expect_error(login(core, "lou", PASSWORD))
        assert error_info(still).reason == "LOGIN_FAILED"
        pending = await login(core, "ada", PASSWORD)  # password fine: counters are separate
        assert pending.step == auth_pb.LOGIN_STEP_MFA_REQUIRED
        mfa = await expect_error(
            auth_call(
                core,
                "VerifyMfa",
                auth_pb.VerifyMfaRequest(mfa_token=pending.mfa_token, code=code_at(enrol.secret, time.time() + 30)),
            )
        )
        assert mfa.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(mfa).reason == "MFA_LOCKED"
        assert len(audit_rows(core, action="/vivified.identity.v1.AuthService/VerifyMfa", reason="MFA_LOCKED")) == 1
        assert PASSWORD not in core.log()


@pytest.mark.parametrize(
    "secret", [b"", b"only-twenty-bytes-ok", bytes(range(31))], ids=["empty", "20-bytes", "31-bytes"]
)
async def test_b4_core_refuses_a_weak_token_key(tmp_path: pathlib.Path, secret: bytes) -> None:
    data_dir = tmp_path / "data"
    key = data_dir / "identity" / "token.key"
    key.parent.mkdir(parents=True)
    key.write_bytes(base64.urlsafe_b64encode(secret))
    key.chmod(0o600)
    with pytest.raises(RuntimeError) as caught:
        start_core(data_dir, timeout=20)
    assert "token key" in str(caught.value) and "32" in str(caught.value)
