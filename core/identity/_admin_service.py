"""UserAdminService: create, list, read, change, disable and delete users, and
reset a user's MFA.

Policy lets operators and users holding `user_manager` call everything; any
signed-in user may call GetUser, and the handler then shows a user without
`user_manager` only their own account. Anyone else's id — existing or not —
gets the same NOT_FOUND (USER_NOT_FOUND), so ids cannot be probed (BOLA, C4);
the audit record notes `why=not_owner` for the former.

Creating a user without a password invites them: a one-time activation token
(256 random bits, kept only as SHA-256, short-lived) is returned and carried
in the `UserCreated` event the core publishes; `AuthService.ActivateAccount`
redeems it. Every create, update, disable and MFA reset publishes `UserCreated` /
`UserUpdated` (source `core`) through the event bus's store-and-audit path.

ResetUserMfa clears the second factor (secret, pending enrolment, backup codes,
MFA lockout) and ends the user's sessions, so the next sign-in of a role that
requires MFA must enrol a new authenticator. It needs a reason, kept in the
call's audit record (`change_reason`) with whether MFA was enrolled before.
A create whose event cannot be stored is undone and fails UNAVAILABLE, so
no plugin misses a person the core knows.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from vivified.core.chain import PrincipalKind, annotate, current_call
from vivified.core.errors import InvalidArgument, VivifiedError
from vivified.core.identity._api_keys import ApiKeys
from vivified.core.identity._auth_service import normalise_username
from vivified.core.identity._passwords import PasswordHasher, check_new_password
from vivified.core.identity._sessions import Sessions
from vivified.core.identity._user_events import UserEvents
from vivified.core.identity._users import UserRecord, UserStore, code_sha256, not_found
from vivified.core.traits import RoleCatalogue, TraitCatalogue
from vivified.identity.v1 import user_admin_pb2 as pb
from vivified.identity.v1 import user_admin_pb2_grpc

_DOMAIN = "vivified.identity"
USER_MANAGER = "user_manager"
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")
MAX_EMAIL_CHARS = 254
MAX_DISPLAY_NAME_CHARS = 128
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
ACTIVATION_PREFIX = "vat_"
_UPDATABLE = ("roles", "email", "display_name")
MAX_REASON_CHARS = 512


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_REQUEST", domain=_DOMAIN)


def check_email(email: str) -> str | None:
    """A plausible `local@domain.tld` address (domain lower-cased), or None for empty."""
    value = email.strip()
    if not value:
        return None
    if len(value) > MAX_EMAIL_CHARS or not value.isprintable() or not _EMAIL.fullmatch(value):
        raise _invalid(f"email must be an address like name@example.com, at most {MAX_EMAIL_CHARS} characters")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def check_display_name(display_name: str) -> str | None:
    """A name of printable characters (no control or bidi characters), or None for empty."""
    value = display_name.strip()
    if not value:
        return None
    if len(value) > MAX_DISPLAY_NAME_CHARS or not value.isprintable():
        raise _invalid(f"display_name must be at most {MAX_DISPLAY_NAME_CHARS} printable characters")
    return value


class UserAdmin:
    """What the service and the CLI share: validated user creation."""

    def __init__(
        self,
        store: UserStore,
        hasher: PasswordHasher,
        roles: RoleCatalogue,
        traits: TraitCatalogue,
        *,
        activation_seconds: int = 24 * 3600,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.roles = roles
        self.traits = traits
        self.activation_seconds = activation_seconds

    def validate(self, username: str, password: str | None, roles: list[str]) -> tuple[str, tuple[str, ...]]:
        """Username and roles, checked; `password` None means an invitation (no password yet)."""
        name = normalise_username(username)
        if not set(name) <= _USERNAME_CHARS:
            raise InvalidArgument(
                "username may hold only a-z, 0-9, '.', '_', '-', '@'", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        if password is not None:
            check_new_password(password)
        return name, self.roles.check_roles(roles, self.traits)

    def invitation(self) -> tuple[str, tuple[str, int]]:
        """A new activation token and what the store keeps of it: (SHA-256, expiry)."""
        token = ACTIVATION_PREFIX + secrets.token_urlsafe(32)
        return token, (code_sha256(token), self.store.now() + self.activation_seconds)

    def user_message(self, user: UserRecord) -> pb.User:
        return pb.User(
            user_id=user.user_id,
            username=user.username,
            roles=list(user.roles),
            traits=sorted(self.roles.traits_of(user.roles)),
            disabled=user.disabled,
            mfa_enrolled=user.mfa_secret is not None,
            create_time=timestamp_pb2.Timestamp(seconds=user.created_at),
            update_time=timestamp_pb2.Timestamp(seconds=user.updated_at),
            email=user.email or "",
            display_name=user.display_name or "",
            invited=user.invited,
        )


def _require_id(user_id: str) -> str:
    if not user_id or len(user_id) > 40:
        raise InvalidArgument("user_id is required", reason="INVALID_REQUEST", domain=_DOMAIN)
    annotate(resource=f"user/{user_id}")
    return user_id


def _require_reason(reason: str) -> str:
    value = reason.strip()
    if not value or len(value) > MAX_REASON_CHARS or not value.isprintable():
        raise _invalid(f"reason is required: 1 to {MAX_REASON_CHARS} printable characters")
    return value


class UserAdminService(user_admin_pb2_grpc.UserAdminServiceServicer):
    """Governs users; every change that alters access ends the user's sessions."""

    def __init__(self, admin: UserAdmin, sessions: Sessions, keys: ApiKeys, events: UserEvents) -> None:
        self._admin = admin
        self._store = admin.store
        self._sessions = sessions
        self._keys = keys
        self._events = events

    async def _access_changed(self, user_id: str, why: str) -> None:
        """End the user's sessions and drop cached API key state, so the
        change applies to the next call on this core."""
        await self._sessions.revoke_user(user_id, why)
        self._keys.forget_owner(user_id)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateUserResponse:
        password = request.password or None
        username, roles = self._admin.validate(request.username, password, list(request.roles))
        email, display_name = check_email(request.email), check_display_name(request.display_name)
        token, activation = ("", None) if password is not None else self._admin.invitation()
        # An invited user's password_hash is empty: it never verifies (Login checks a dummy hash instead).
        password_hash = await self._admin.hasher.hash(password) if password is not None else ""
        user = await self._store.create(
            username, password_hash, roles, email=email, display_name=display_name, activation=activation
        )
        annotate(
            resource=f"user/{user.user_id}", username=username, roles=",".join(roles), invited=str(user.invited).lower()
        )
        try:
            await self._events.created(user, token)
        except VivifiedError:
            await self._store.delete(user.user_id)
            annotate(undone="event_not_stored")
            raise
        response = pb.CreateUserResponse(user=self._admin.user_message(user), activation_token=token)
        if activation is not None:
            response.activation_expire_time.CopyFrom(timestamp_pb2.Timestamp(seconds=activation[1]))
        return response

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListUsersResponse:
        size = request.page_size or 100
        if not 1 <= size <= 500:
            raise InvalidArgument("page_size must be 1 to 500", reason="INVALID_REQUEST", domain=_DOMAIN)
        users = await self._store.page(request.page_token, size + 1)
        more = len(users) > size
        users = users[:size]
        return pb.ListUsersResponse(
            users=[self._admin.user_message(u) for u in users],
            next_page_token=users[-1].username if more else "",
        )

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetUserResponse:
        user_id = _require_id(request.user_id)
        call = current_call()
        principal = call.principal if call is not None else None
        if principal is None or (
            principal.kind == PrincipalKind.USER and USER_MANAGER not in principal.traits and principal.id != user_id
        ):
            # Same answer as a missing user: the caller learns nothing about ids.
            annotate(why="not_owner")
            raise not_found()
        user = await self._store.require(user_id)
        return pb.GetUserResponse(user=self._admin.user_message(user))

    async def UpdateUser(
        self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateUserResponse:
        user_id = _require_id(request.user_id)
        paths = list(request.update_mask.paths)
        if not paths or len(set(paths)) != len(paths) or not set(paths) <= set(_UPDATABLE):
            raise _invalid(f"update_mask must name one or more of {', '.join(_UPDATABLE)}, each once")
        values: dict[str, Any] = {}
        if "roles" in paths:
            values["roles"] = self._admin.roles.check_roles(list(request.roles), self._admin.traits)
            annotate(roles=",".join(values["roles"]))
        if "email" in paths:
            values["email"] = check_email(request.email)
        if "display_name" in paths:
            values["display_name"] = check_display_name(request.display_name)
        user = await self._store.update(user_id, **values)
        if "roles" in paths:
            await self._access_changed(user_id, "roles_changed")
        annotate(changed=",".join(sorted(paths)))
        await self._events.updated(user, sorted(paths))
        return pb.UpdateUserResponse(user=self._admin.user_message(user))

    async def DisableUser(
        self, request: pb.DisableUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DisableUserResponse:
        user_id = _require_id(request.user_id)
        user = await self._store.update(user_id, disabled=True)
        await self._access_changed(user_id, "disabled")
        await self._events.updated(user, ["disabled"])
        return pb.DisableUserResponse(user=self._admin.user_message(user))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteUserResponse:
        user_id = _require_id(request.user_id)
        await self._access_changed(user_id, "deleted")
        await self._store.delete(user_id)
        return pb.DeleteUserResponse()

    async def ResetUserMfa(
        self, request: pb.ResetUserMfaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResetUserMfaResponse:
        user_id = _require_id(request.user_id)
        reason = _require_reason(request.reason)
        annotate(change_reason=reason)
        before = await self._store.require(user_id)
        user = await self._store.reset_mfa(user_id)
        # Sessions signed in with the old factor end: whoever holds the lost
        # authenticator's session must sign in again, and enrol.
        await self._access_changed(user_id, "mfa_reset")
        annotate(had_mfa=str(before.mfa_secret is not None).lower())
        await self._events.updated(user, ["mfa_enrolled"])
        return pb.ResetUserMfaResponse(user=self._admin.user_message(user))
