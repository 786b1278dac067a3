"""What the directory learns from the event bus.

- `UserCreated` (from the core): a profile, `invited` when the account awaits
  activation, else `active`.
- `UserUpdated` (from the core): the changed core fields; `active` once the
  account is no longer invited (the person activated it).
- `EmailSent` / `EmailFailed` naming a user: onboarding `welcomed` / `failed`
  with the error code as reason (only for people still onboarding).

Deliveries are at least once: every handler is idempotent. An event about a
user the directory does not know yet (e.g. an `EmailSent` that overtook its
`UserCreated`) raises, so the bus redelivers it later."""

from __future__ import annotations

import logging

from vivified.events.v1.canonical_pb2 import EmailFailed, EmailSent, UserCreated, UserUpdated
from vivified.plugins.user_management._store import ACTIVE, FAILED, INVITED, WELCOMED, ProfileStore
from vivified.sdk import ReceivedEvent

_log = logging.getLogger("vivified.plugins.user_management")
CORE_SOURCE = "core"


class UnknownUser(Exception):
    """An event names a user with no profile yet; redelivery will retry it."""


class DirectoryEvents:
    """Subscription handlers over a `ProfileStore`."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store

    async def user_created(self, user: UserCreated, event: ReceivedEvent) -> None:
        if event.event.source_plugin_id != CORE_SOURCE:
            _log.warning(
                "ignoring UserCreated %s from %r: only the core announces users",
                event.event.event_id,
                event.event.source_plugin_id,
            )
            return
        await self._store.upsert_user(
            user.user_id,
            username=user.username,
            values={"display_name": user.display_name, "email": user.email},
            state=INVITED if user.invited else ACTIVE,
        )
        _log.info("profile of %s: %s", user.user_id, "invited" if user.invited else "active")

    async def user_updated(self, user: UserUpdated, event: ReceivedEvent) -> None:
        if event.event.source_plugin_id != CORE_SOURCE:
            _log.warning("ignoring UserUpdated %s from %r", event.event.event_id, event.event.source_plugin_id)
            return
        changed = set(user.changed_fields)
        values: dict[str, str] = {
            name: str(getattr(user, name)) for name in ("display_name", "email") if name in changed
        }
        if await self._store.get(user.user_id) is None:
            raise UnknownUser(user.user_id)
        await self._store.upsert_user(user.user_id, values=values, state=None if user.invited else ACTIVE)

    async def email_sent(self, sent: EmailSent, event: ReceivedEvent) -> None:
        if not sent.user_id:
            return
        if await self._store.advance(sent.user_id, WELCOMED) is None:
            raise UnknownUser(sent.user_id)

    async def email_failed(self, failed: EmailFailed, event: ReceivedEvent) -> None:
        if not failed.user_id:
            return
        if await self._store.advance(failed.user_id, FAILED, failed.error_code or "email_failed") is None:
            raise UnknownUser(failed.user_id)
