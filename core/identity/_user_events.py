"""What core identity tells the platform about people: `UserCreated` and
`UserUpdated` canonical events (source `core`), published through the event
bus's own store-and-audit path by the `publish` callable the core wires in.

The activation token of an invited user travels in `UserCreated`'s
CONFIDENTIAL field: the bus clears it (and the PII fields) for every
subscriber without the matching trait, and audits each delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from vivified.core.identity._users import UserRecord
from vivified.events.v1 import canonical_pb2

PublishEvent = Callable[[Message], Awaitable[None]]
"""Stores one core event durably (and audits it); raises `Unavailable` when it cannot."""


class UserEvents:
    """Builds and publishes the user events of identity changes."""

    def __init__(self, publish: PublishEvent) -> None:
        self._publish = publish

    async def created(self, user: UserRecord, activation_token: str = "") -> None:
        event = canonical_pb2.UserCreated(
            user_id=user.user_id,
            username=user.username,
            email=user.email or "",
            display_name=user.display_name or "",
            roles=list(user.roles),
            activation_token=activation_token,
            invited=user.invited,
        )
        if user.invited and user.activation_expires_at is not None:
            event.activation_expire_time.CopyFrom(timestamp_pb2.Timestamp(seconds=user.activation_expires_at))
        await self._publish(event)

    async def updated(self, user: UserRecord, changed_fields: Sequence[str]) -> None:
        await self._publish(
            canonical_pb2.UserUpdated(
                user_id=user.user_id,
                changed_fields=list(changed_fields),
                email=user.email or "",
                display_name=user.display_name or "",
                disabled=user.disabled,
                invited=user.invited,
                roles=list(user.roles),
            )
        )
