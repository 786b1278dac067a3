"""AuthService: sign-in with password (+ TOTP), refresh, logout, password change,
MFA enrolment. Served on the bootstrap port; every call is audited by the chain.

Login answers an unknown user, a wrong password, a disabled user and a locked
account identically (UNAUTHENTICATED, LOGIN_FAILED, same message), and spends
the same Argon2id time on each (an unknown user is checked against a dummy
hash); only the audit record says which it was (ASVS 6.3.8, SECURITY B10).
An invited account (no password yet) fails Login the same way.

ActivateAccount redeems an invited account's one-time activation token and
sets its first password; an unknown, used or expired token gets one answer
(UNAUTHENTICATED, ACTIVATION_TOKEN_INVALID), the audit record says which.
The new password is hashed before the token is looked up, so each answer
costs the same. It signs nobody in: the first Login applies the role's MFA
rules as for everyone. The core then publishes `UserUpdated` (`activated`).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.core.chain import PrincipalKind, annotate, current_call
from vivified.core.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from vivified.core.identity._config import IdentityConfig
from vivified.core.identity._mfa import MfaChecker, new_backup_codes
from vivified.core.identity._passwords import (
    MAX_PASSWORD_CHARS,
    PasswordHasher,
    check_new_password,
)
from vivified.core.identity._permissions import Permissions
from vivified.core.identity._secret_box import SecretBox
from vivified.core.identity._sessions import Sessions, Tokens
from vivified.core.identity._tokens import MFA_TYPE, TokenSigner
from vivified.core.identity._totp import encode_secret, new_secret, provisioning_uri
from vivified.core.identity._user_events import UserEvents
from vivified.core.identity._users import Lockout, UserRecord, UserStore, code_sha256, not_found
from vivified.core.traits import RoleCatalogue
from vivified.identity.v1 import auth_pb2 as pb
from vivified.identity.v1 import auth_pb2_grpc

_DOMAIN = "vivified.identity"
MAX_USERNAME_CHARS = 64
MAX_ACTIVATION_TOKEN_CHARS = 256
_VERIFY, _ENROLL = "verify", "enroll"


def _login_failed() -> Unauthenticated:
    return Unauthenticated(
        "the username or password is wrong, or the account is disabled or temporarily locked",
        reason="LOGIN_FAILED",
        domain=_DOMAIN,
    )


def _activation_invalid() -> Unauthenticated:
    return Unauthenticated(
        "the activation token is not valid: it is unknown, was already used or has expired; ask for a new invitation",
        reason="ACTIVATION_TOKEN_INVALID",
        domain=_DOMAIN,
    )


def tokens_message(tokens: Tokens) -> pb.Tokens:
    return pb.Tokens(
        access_token=tokens.access_token,
        access_token_expire_time=timestamp_pb2.Timestamp(seconds=tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        session_expire_time=timestamp_pb2.Timestamp(seconds=tokens.session_expires_at),
    )


def normalise_username(username: str) -> str:
    """Usernames compare case-insensitively; refuse empty or oversized ones."""
    name = username.strip().lower()
    if not name or len(name) > MAX_USERNAME_CHARS:
        raise InvalidArgument(
            f"username must be 1 to {MAX_USERNAME_CHARS} characters", reason="INVALID_REQUEST", domain=_DOMAIN
        )
    return name


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """People sign in here; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        store: UserStore,
        hasher: PasswordHasher,
        sessions: Sessions,
        signer: TokenSigner,
        roles: RoleCatalogue,
        config: IdentityConfig,
        box: SecretBox,
        events: UserEvents,
        permissions: Permissions,
    ) -> None:
        self._permissions = permissions
        self._box = box
        self._events = events
        self._store = store
        self._hasher = hasher
        self._sessions = sessions
        self._signer = signer
        self._roles = roles
        self._config = config
        self._lockout = Lockout(config.lockout_threshold, config.lockout_seconds, config.lockout_max_seconds)
        self._mfa = MfaChecker(
            store, Lockout(config.mfa_lockout_threshold, config.mfa_lockout_seconds, config.lockout_max_seconds), box
        )

    async def Login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.LoginResponse:
        username = normalise_username(request.username)
        if not request.password or len(request.password) > MAX_PASSWORD_CHARS:
            raise InvalidArgument(
                f"password must be 1 to {MAX_PASSWORD_CHARS} characters", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        annotate(username=username)
        user = await self._store.by_username(username)
        if user is None:
            await self._hasher.verify(request.password, None)
            annotate(why="unknown_user")
            raise _login_failed()
        annotate(user_id=user.user_id)
        allowed = await self._store.take_attempt(user.user_id, self._lockout, mfa=False)
        # An invited user has no password: checked against the dummy hash, same cost.
        ok = await self._hasher.verify(request.password, None if user.invited else user.password_hash)
        if not allowed:
            annotate(why="locked")
            raise _login_failed()
        if user.invited:
            annotate(why="invited")
            raise _login_failed()
        if not ok:
            annotate(why="wrong_password")
            raise _login_failed()
        if user.disabled:
            annotate(why="disabled")
            raise _login_failed()
        upgraded = await self._hasher.hash(request.password) if self._hasher.outdated(user.password_hash) else None
        user = await self._store.login_succeeded(user, upgraded)
        if upgraded is not None:
            annotate(password_hash="upgraded")
        if user.mfa_secret is not None:
            return self._mfa_step(user, _VERIFY, pb.LOGIN_STEP_MFA_REQUIRED)
        if self._roles.mfa_required(user.roles):
            return self._mfa_step(user, _ENROLL, pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED)
        return pb.LoginResponse(step=pb.LOGIN_STEP_COMPLETE, tokens=tokens_message(await self._sessions.start(user)))

    def _mfa_step(self, user: UserRecord, purpose: str, step: int) -> pb.LoginResponse:
        token, claims = self._signer.issue(MFA_TYPE, user.user_id, self._config.mfa_token_seconds, purpose=purpose)
        annotate(step=purpose)
        return pb.LoginResponse(
            step=step,  # type: ignore[arg-type]
            mfa_token=token,
            mfa_token_expire_time=timestamp_pb2.Timestamp(seconds=claims.expires_at),
        )

    async def _mfa_user(self, token: str, purpose: str) -> UserRecord:
        claims = self._signer.verify(token, MFA_TYPE)
        if claims.extra.get("purpose") != purpose:
            raise Unauthenticated("this MFA token is for another step", reason="TOKEN_INVALID", domain=_DOMAIN)
        user = await self._store.get(claims.subject)
        if user is None or user.disabled:
            raise Unauthenticated("the account cannot sign in", reason="SESSION_REVOKED", domain=_DOMAIN)
        annotate(user_id=user.user_id)
        return user

    async def _caller(self) -> tuple[UserRecord, str]:
        """The signed-in user of this call and its session id."""
        call = current_call()
        principal = call.principal if call is not None else None
        if principal is None or principal.kind != PrincipalKind.USER or principal.session_id is None:
            raise Unauthenticated("sign in first", reason="IDENTITY_MISSING", domain=_DOMAIN)
        user = await self._store.get(principal.id)
        if user is None:
            raise not_found()
        return user, principal.session_id

    async def VerifyMfa(
        self, request: pb.VerifyMfaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyMfaResponse:
        user = await self._mfa_user(request.mfa_token, _VERIFY)
        await self._mfa.check(user, request.code)
        return pb.VerifyMfaResponse(tokens=tokens_message(await self._sessions.start(user)))

    async def Refresh(
        self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefreshResponse:
        return pb.RefreshResponse(tokens=tokens_message(await self._sessions.refresh(request.refresh_token)))

    async def Logout(self, request: pb.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.LogoutResponse:
        _, session_id = await self._caller()
        await self._sessions.revoke(session_id, "logout")
        return pb.LogoutResponse()

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.WhoAmIResponse:
        call = current_call()
        principal = call.principal if call is not None else None
        if call is None or principal is None or principal.kind != PrincipalKind.USER:
            raise Unauthenticated("sign in first", reason="IDENTITY_MISSING", domain=_DOMAIN)
        user = await self._store.get(principal.id)
        if user is None:
            raise not_found()
        return pb.WhoAmIResponse(
            user_id=user.user_id,
            username=user.username,
            roles=sorted(user.roles),
            traits=sorted(call.traits),
            allowed_methods=self._permissions.allowed(principal, call.traits),
            api_key=principal.api_key_id is not None,
        )

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ChangePasswordResponse:
        user, _ = await self._caller()
        check_new_password(request.new_password)
        if len(request.current_password) > MAX_PASSWORD_CHARS:
            raise _login_failed()
        # Counted before the check, as at Login: a stolen access token cannot
        # guess the current password past the lockout.
        allowed = await self._store.take_attempt(user.user_id, self._lockout, mfa=False)
        ok = await self._hasher.verify(request.current_password, user.password_hash)
        if not allowed or not ok:
            annotate(why="locked" if not allowed else "wrong_password")
            raise _login_failed()
        await self._store.login_succeeded(user, None)
        await self._store.update(user.user_id, password_hash=await self._hasher.hash(request.new_password))
        await self._sessions.revoke_user(user.user_id, "password_change")
        return pb.ChangePasswordResponse()

    async def _enrolling(self, mfa_token: str) -> tuple[UserRecord, bool]:
        if mfa_token:
            return await self._mfa_user(mfa_token, _ENROLL), True
        return (await self._caller())[0], False

    async def EnrollMfa(
        self, request: pb.EnrollMfaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EnrollMfaResponse:
        user, _ = await self._enrolling(request.mfa_token)
        if user.mfa_secret is not None:
            raise FailedPrecondition("MFA is already enrolled", reason="MFA_ALREADY_ENROLLED", domain=_DOMAIN)
        secret = new_secret()
        sealed = self._box.seal(encode_secret(secret), user.user_id)
        await self._store.update(user.user_id, mfa_pending_secret=sealed)
        return pb.EnrollMfaResponse(
            secret=encode_secret(secret), provisioning_uri=provisioning_uri(secret, user.username, self._config.issuer)
        )

    async def ConfirmMfa(
        self, request: pb.ConfirmMfaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ConfirmMfaResponse:
        user, via_login = await self._enrolling(request.mfa_token)
        if user.mfa_secret is not None:
            raise FailedPrecondition("MFA is already enrolled", reason="MFA_ALREADY_ENROLLED", domain=_DOMAIN)
        if user.mfa_pending_secret is None:
            raise FailedPrecondition("call EnrollMfa first", reason="MFA_NOT_PENDING", domain=_DOMAIN)
        await self._mfa.check_totp(user, user.mfa_pending_secret, request.code)
        user = await self._store.update(user.user_id, mfa_secret=user.mfa_pending_secret, mfa_pending_secret=None)
        codes = new_backup_codes()
        await self._store.set_backup_codes(user.user_id, codes)
        response = pb.ConfirmMfaResponse(backup_codes=codes)
        if via_login:
            response.tokens.CopyFrom(tokens_message(await self._sessions.start(user)))
        return response

    async def ActivateAccount(
        self, request: pb.ActivateAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateAccountResponse:
        check_new_password(request.new_password)
        token = request.activation_token
        password_hash = await self._hasher.hash(request.new_password)
        if not token or len(token) > MAX_ACTIVATION_TOKEN_CHARS:
            annotate(why="malformed")
            raise _activation_invalid()
        outcome, user = await self._store.redeem_activation(code_sha256(token), password_hash)
        if user is None:
            annotate(why=outcome)
            raise _activation_invalid()
        annotate(resource=f"user/{user.user_id}", user_id=user.user_id)
        await self._events.updated(user, ["activated"])
        return pb.ActivateAccountResponse(user_id=user.user_id, username=user.username)
