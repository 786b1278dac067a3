"""UserAdminService: create, list, read, change, disable and delete users.

Policy lets operators and users holding `user_manager` call everything; any
signed-in user may call GetUser, and the handler then shows a user without
`user_manager` only their own account. Anyone else's id — existing or not —
gets the same NOT_FOUND (USER_NOT_FOUND), so ids cannot be probed (BOLA, C4);
the audit record notes `why=not_owner` for the former.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from vivified.core.chain import annotate, current_call
from vivified.core.errors import InvalidArgument
from vivified.core.identity._api_keys import ApiKeys
from vivified.core.identity._auth_service import normalise_username
from vivified.core.identity._passwords import PasswordHasher, check_new_password
from vivified.core.identity._sessions import Sessions
from vivified.core.identity._users import UserRecord, UserStore, not_found
from vivified.core.traits import RoleCatalogue, TraitCatalogue
from vivified.identity.v1 import user_admin_pb2 as pb
from vivified.identity.v1 import user_admin_pb2_grpc

_DOMAIN = "vivified.identity"
USER_MANAGER = "user_manager"
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")


class UserAdmin:
    """What the service and the CLI share: validated user creation."""

    def __init__(self, store: UserStore, hasher: PasswordHasher, roles: RoleCatalogue, traits: TraitCatalogue) -> None:
        self.store = store
        self.hasher = hasher
        self.roles = roles
        self.traits = traits

    def validate(self, username: str, password: str, roles: list[str]) -> tuple[str, tuple[str, ...]]:
        name = normalise_username(username)
        if not set(name) <= _USERNAME_CHARS:
            raise InvalidArgument(
                "username may hold only a-z, 0-9, '.', '_', '-', '@'", reason="INVALID_REQUEST", domain=_DOMAIN
            )
        check_new_password(password)
        return name, self.roles.check_roles(roles, self.traits)

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
        )


def _require_id(user_id: str) -> str:
    if not user_id or len(user_id) > 40:
        raise InvalidArgument("user_id is required", reason="INVALID_REQUEST", domain=_DOMAIN)
    annotate(resource=f"user/{user_id}")
    return user_id


class UserAdminService(user_admin_pb2_grpc.UserAdminServiceServicer):
    """Governs users; every change that alters access ends the user's sessions."""

    def __init__(self, admin: UserAdmin, sessions: Sessions, keys: ApiKeys) -> None:
        self._admin = admin
        self._store = admin.store
        self._sessions = sessions
        self._keys = keys

    async def _access_changed(self, user_id: str, why: str) -> None:
        """End the user's sessions and drop cached API key state, so the
        change applies to the next call on this core."""
        await self._sessions.revoke_user(user_id, why)
        self._keys.forget_owner(user_id)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateUserResponse:
        username, roles = self._admin.validate(request.username, request.password, list(request.roles))
        user = await self._store.create(username, await self._admin.hasher.hash(request.password), roles)
        annotate(resource=f"user/{user.user_id}", username=username, roles=",".join(roles))
        return pb.CreateUserResponse(user=self._admin.user_message(user))

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

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetUserResponse:
        user_id = _require_id(request.user_id)
        call = current_call()
        principal = call.principal if call is not None else None
        if principal is None or (
            principal.kind == "user" and USER_MANAGER not in principal.traits and principal.id != user_id
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
        if paths != ["roles"]:
            raise InvalidArgument("update_mask must be exactly ['roles']", reason="INVALID_REQUEST", domain=_DOMAIN)
        roles = self._admin.roles.check_roles(list(request.roles), self._admin.traits)
        user = await self._store.update(user_id, roles=roles)
        await self._access_changed(user_id, "roles_changed")
        annotate(roles=",".join(roles))
        return pb.UpdateUserResponse(user=self._admin.user_message(user))

    async def DisableUser(
        self, request: pb.DisableUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DisableUserResponse:
        user_id = _require_id(request.user_id)
        user = await self._store.update(user_id, disabled=True)
        await self._access_changed(user_id, "disabled")
        return pb.DisableUserResponse(user=self._admin.user_message(user))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteUserResponse:
        user_id = _require_id(request.user_id)
        await self._access_changed(user_id, "deleted")
        await self._store.delete(user_id)
        return pb.DeleteUserResponse()
