"""AuthService in-process with an injected clock: lock windows (B10), MFA
throttling apart from passwords (B9), hash upgrade at login (B8), backup codes,
and MFA token expiry. The real-process tests cover the wire and restarts."""

from __future__ import annotations

import asyncio
import os
import pathlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from vivified.core.chain._call import Call, Principal, _current
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.errors import Unauthenticated
from vivified.core.identity import (
    Identity,
    IdentityConfig,
    PasswordParams,
    build_identity,
    hash_params,
    totp,
)
from vivified.core.identity._break_glass import Activation
from vivified.core.identity._totp import decode_secret
from vivified.core.policy import RuleIndex, load_default_rules
from vivified.core.rest import served_service_names
from vivified.core.traits import TraitCatalogue
from vivified.identity.v1 import auth_pb2 as pb

pytestmark = pytest.mark.asyncio
PASSWORD = "a long enough password"


@dataclass
class Rig:
    clock: ManualClock
    identity: Identity
    announced: list[Activation]

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.identity.auth._store

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    async def login(self, username: str = "ann", password: str = PASSWORD) -> pb.LoginResponse:
        return await self.identity.auth.Login(pb.LoginRequest(username=username, password=password), None)  # type: ignore[arg-type]

    async def refused(self, awaitable: object) -> str:
        with pytest.raises(Unauthenticated) as caught:
            await awaitable  # type: ignore[misc]
        return caught.value.reason


def _rig(tmp: pathlib.Path, config: IdentityConfig | None = None) -> Rig:
    clock = ManualClock()
    engine = create_engine_for(sqlite_url(tmp / "db.sqlite"))
    announced: list[Activation] = []

    async def announce(activation: Activation) -> None:
        announced.append(activation)

    async def publish(event: object) -> None:  # these tests look at sign-in only, not at the events
        return None

    identity = build_identity(
        engine=engine,
        clock=clock,
        data_dir=tmp,
        config=config or IdentityConfig(),
        traits=TraitCatalogue.load_default(),
        announce_break_glass=announce,
        publish=publish,
        policy_index=lambda: RuleIndex.build(load_default_rules(None)),
        served_services=served_service_names(),
    )
    return Rig(clock, identity, announced)


async def _user(rig: Rig, roles: tuple[str, ...] = ("viewer",), password_hash: str | None = None) -> str:
    encoded = password_hash or await rig.identity.auth._hasher.hash(PASSWORD)
    return (await rig.store.create("ann", encoded, roles)).user_id


async def test_b10_lock_refuses_the_right_password_then_unlocks_and_escalates(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path)
    await _user(rig)
    for _ in range(5):
        assert await rig.refused(rig.login(password="wrong password!")) == "LOGIN_FAILED"
    assert await rig.refused(rig.login()) == "LOGIN_FAILED"  # locked: the right password is refused too
    rig.clock.advance(1799)
    assert await rig.refused(rig.login()) == "LOGIN_FAILED"
    rig.clock.advance(1)
    assert (await rig.login()).step == pb.LOGIN_STEP_COMPLETE  # unlocked after the window; counters reset
    for _ in range(5):
        await rig.refused(rig.login(password="wrong password!"))
    user = await rig.store.by_username("ann")
    assert user.locked_until == rig.now() + 1800  # reset by the success: back to the first step
    for _ in range(5):  # failures during a lock do not extend it
        await rig.refused(rig.login(password="wrong password!"))
    assert (await rig.store.by_username("ann")).locked_until == rig.now() + 1800
    rig.clock.advance(1800)
    for _ in range(5):
        await rig.refused(rig.login(password="wrong password!"))
    assert (await rig.store.by_username("ann")).locked_until == rig.now() + 3600  # escalated


async def test_change_password_counts_guesses_against_the_lockout(tmp_path: pathlib.Path) -> None:
    # Someone holding a stolen access token cannot guess the current password past the lock.
    rig = _rig(tmp_path)
    user_id = await _user(rig)
    call = Call(
        method="/m/ChangePassword",
        service="m",
        method_name="ChangePassword",
        metadata={},
        context=None,
        streaming=False,
        principal=Principal(kind="user", id=user_id, session_id="s1"),
    )  # type: ignore[arg-type]
    _current.set(call)

    def change(current: str) -> object:
        request = pb.ChangePasswordRequest(current_password=current, new_password="another long password")
        return rig.identity.auth.ChangePassword(request, None)  # type: ignore[arg-type]

    for _ in range(5):
        assert await rig.refused(change("wrong password!")) == "LOGIN_FAILED"
    assert await rig.refused(change(PASSWORD)) == "LOGIN_FAILED"  # locked: the right one is refused too
    assert await rig.refused(rig.login()) == "LOGIN_FAILED"


async def test_b8_parameters_upgrade_on_next_login(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path, IdentityConfig(password=PasswordParams(memory_kib=19456, iterations=3)))
    old = Argon2id(salt=os.urandom(16), length=32, iterations=2, lanes=1, memory_cost=19456).derive_phc_encoded(
        PASSWORD.encode()
    )
    await _user(rig, password_hash=old)
    assert (await rig.login()).step == pb.LOGIN_STEP_COMPLETE
    stored = (await rig.store.by_username("ann")).password_hash
    assert hash_params(stored) == (19456, 3, 1) and stored != old
    assert (await rig.login()).step == pb.LOGIN_STEP_COMPLETE  # the upgraded hash verifies


async def _enrolled(rig: Rig) -> str:
    """An admin (MFA mandatory) enrolled through the login flow; returns the secret."""
    await _user(rig, roles=("admin",))
    first = await rig.login()
    assert first.step == pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED and not first.HasField("tokens")
    enrol = await rig.identity.auth.EnrollMfa(pb.EnrollMfaRequest(mfa_token=first.mfa_token), None)  # type: ignore[arg-type]
    code = totp(decode_secret(enrol.secret), rig.now())
    confirmed = await rig.identity.auth.ConfirmMfa(pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code), None)  # type: ignore[arg-type]
    assert confirmed.tokens.access_token and len(confirmed.backup_codes) == 10
    rig.clock.advance(30)
    return enrol.secret


async def test_b9_mfa_throttle_is_separate_from_the_password_counter(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path)
    secret = await _enrolled(rig)
    pending = await rig.login()
    assert pending.step == pb.LOGIN_STEP_MFA_REQUIRED

    def verify(code: str):  # type: ignore[no-untyped-def]
        return rig.identity.auth.VerifyMfa(pb.VerifyMfaRequest(mfa_token=pending.mfa_token, code=code), None)  # type: ignore[arg-type]

    right = totp(decode_secret(secret), rig.now())
    wrong = str((int(right) + 1) % 1_000_000).zfill(6)
    for _ in range(5):
        assert await rig.refused(verify(wrong)) == "MFA_CODE_INVALID"
    assert await rig.refused(verify(right)) == "MFA_LOCKED"
    user = await rig.store.by_username("ann")
    assert user.failed_logins == 0 and user.locked_until == 0  # passwords unaffected
    assert (await rig.login()).step == pb.LOGIN_STEP_MFA_REQUIRED
    rig.clock.advance(1800)
    pending = await rig.login()
    tokens = (await verify(totp(decode_secret(secret), rig.now()))).tokens
    assert tokens.access_token


async def test_backup_codes_work_once(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path)
    await _user(rig, roles=("admin",))
    first = await rig.login()
    auth = rig.identity.auth
    enrol = await auth.EnrollMfa(pb.EnrollMfaRequest(mfa_token=first.mfa_token), None)  # type: ignore[arg-type]
    code = totp(decode_secret(enrol.secret), rig.now())
    backup = (await auth.ConfirmMfa(pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code), None)).backup_codes  # type: ignore[arg-type]
    pending = await rig.login()
    request = pb.VerifyMfaRequest(mfa_token=pending.mfa_token, code=backup[0].upper())
    assert (await auth.VerifyMfa(request, None)).tokens.access_token  # type: ignore[arg-type]
    assert await rig.refused(auth.VerifyMfa(request, None)) == "MFA_CODE_INVALID"  # type: ignore[arg-type]


async def test_mfa_token_expires_and_is_bound_to_its_step(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path)
    await _user(rig, roles=("phi_handler",))  # PHI traits: MFA mandatory too
    first = await rig.login()
    assert first.step == pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED
    auth = rig.identity.auth
    # An enrolment token cannot be used to skip the second factor.
    wrong_step = auth.VerifyMfa(pb.VerifyMfaRequest(mfa_token=first.mfa_token, code="000000"), None)  # type: ignore[arg-type]
    assert await rig.refused(wrong_step) == "TOKEN_INVALID"
    rig.clock.advance(300 + 31)
    late = auth.EnrollMfa(pb.EnrollMfaRequest(mfa_token=first.mfa_token), None)  # type: ignore[arg-type]
    assert await rig.refused(late) == "TOKEN_EXPIRED"


async def test_concurrent_guesses_cannot_outrun_the_thresholds(tmp_path: pathlib.Path) -> None:
    rig = _rig(tmp_path)
    secret = await _enrolled(rig)
    pending = await rig.login()
    right = totp(decode_secret(secret), rig.now())
    wrong = str((int(right) + 1) % 1_000_000).zfill(6)
    request = pb.VerifyMfaRequest(mfa_token=pending.mfa_token, code=wrong)
    results = await asyncio.gather(
        *(rig.identity.auth.VerifyMfa(request, None) for _ in range(20)),
        return_exceptions=True,  # type: ignore[arg-type]
    )
    reasons = sorted(r.reason for r in results if isinstance(r, Unauthenticated))
    assert reasons == ["MFA_CODE_INVALID"] * 5 + ["MFA_LOCKED"] * 15  # exactly five codes were checked
    guesses = await asyncio.gather(
        *(rig.login(password=f"guess number {i:02d}") for i in range(12)), return_exceptions=True
    )
    assert all(isinstance(g, Unauthenticated) and g.reason == "LOGIN_FAILED" for g in guesses)
    assert (await rig.store.by_username("ann")).locked_until == rig.now() + 1800
    assert await rig.refused(rig.login()) == "LOGIN_FAILED"  # five checked, the rest refused unchecked
