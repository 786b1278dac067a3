"""API keys for automation: `vk_<key id>_<secret>`, shown once, stored as SHA-256.

A key is looked up by its public id and its secret's hash compared in constant
time (`hmac.compare_digest`), so a wrong key is refused in the same time
whatever prefix it shares with a real one. A key acts for its owner, limited to
its scopes intersected with the owner's *current* traits; an owner disabled or
deleted takes its keys down. Key state is cached like sessions: a revocation by
this core applies to the next call, one by another replica within
`revocation_check_seconds`. Keys are read only from `x-api-key` metadata (B7):
gRPC has no URL query, and the `authorization` header carries only access tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.errors import Unauthenticated
from vivified.core.identity._config import IdentityConfig
from vivified.core.identity._schema import api_keys_table, users_table
from vivified.core.identity._users import UserRecord
from vivified.core.traits import RoleCatalogue

_DOMAIN = "vivified.identity"
_KEY = re.compile(r"^vk_(vak_[0-9a-f]{24})_([A-Za-z0-9_-]{43})$")
_MAX_CACHED = 100_000


@dataclass(frozen=True)
class ApiKeyRecord:
    """One key as stored (without any secret)."""

    key_id: str
    owner_user_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: int
    expires_at: int
    last_used_at: int | None
    revoked_at: int | None

    @classmethod
    def from_row(cls, row: Any) -> ApiKeyRecord:
        values = dict(row._mapping)
        values.pop("secret_sha256", None)
        values["scopes"] = tuple(json.loads(values["scopes"]))
        return cls(**values)


@dataclass
class _KeyState:
    owner_user_id: str
    secret_sha256: str
    traits: frozenset[str]
    usable: bool
    expires_at: int
    checked_at: float
    saved_used_at: int


@dataclass(frozen=True)
class KeyUse:
    """The verified owner and effective traits behind a presented key."""

    key_id: str
    user_id: str
    traits: frozenset[str]


def _invalid() -> Unauthenticated:
    return Unauthenticated(
        "the API key is not valid (unknown, revoked or expired)", reason="API_KEY_INVALID", domain=_DOMAIN
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class ApiKeys:
    """Creates, lists, revokes and checks API keys."""

    def __init__(self, engine: sa.Engine, clock: Clock, roles: RoleCatalogue, config: IdentityConfig) -> None:
        self._engine = engine
        self._clock = clock
        self._roles = roles
        self._config = config
        self._states: OrderedDict[str, _KeyState] = OrderedDict()

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    async def create(
        self, owner: str, name: str, scopes: tuple[str, ...], ttl_seconds: int
    ) -> tuple[str, ApiKeyRecord]:
        key_id, secret, now = "vak_" + secrets.token_hex(12), secrets.token_urlsafe(32), self._now()
        row = {
            "key_id": key_id,
            "owner_user_id": owner,
            "name": name,
            "scopes": json.dumps(sorted(scopes)),
            "secret_sha256": _sha256(secret),
            "created_at": now,
            "expires_at": now + ttl_seconds,
            "last_used_at": None,
            "revoked_at": None,
        }

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(api_keys_table.insert().values(**row))

        await asyncio.to_thread(write)
        record = ApiKeyRecord(key_id, owner, name, tuple(sorted(scopes)), now, now + ttl_seconds, None, None)
        return f"vk_{key_id}_{secret}", record

    async def of_owner(self, owner: str) -> list[ApiKeyRecord]:
        def read() -> list[ApiKeyRecord]:
            with self._engine.connect() as conn:
                query = (
                    sa.select(api_keys_table)
                    .where(api_keys_table.c.owner_user_id == owner)
                    .order_by(api_keys_table.c.created_at.desc(), api_keys_table.c.key_id)
                )
                return [ApiKeyRecord.from_row(r) for r in conn.execute(query).all()]

        return await asyncio.to_thread(read)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        def read() -> ApiKeyRecord | None:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(api_keys_table).where(api_keys_table.c.key_id == key_id)).first()
            return ApiKeyRecord.from_row(row) if row else None

        return await asyncio.to_thread(read)

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        now = self._now()

        def write() -> ApiKeyRecord:
            with self._engine.begin() as conn:
                conn.execute(
                    api_keys_table.update()
                    .where(api_keys_table.c.key_id == key_id, api_keys_table.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                return ApiKeyRecord.from_row(
                    conn.execute(sa.select(api_keys_table).where(api_keys_table.c.key_id == key_id)).one()
                )

        record = await asyncio.to_thread(write)
        self._states.pop(key_id, None)
        return record

    def forget_owner(self, owner: str) -> None:
        """Drop cached keys of a user whose access changed (disable, roles, delete)."""
        for key_id in [k for k, s in self._states.items() if s.owner_user_id == owner]:
            self._states.pop(key_id, None)

    async def _load(self, key_id: str) -> _KeyState | None:
        def read() -> tuple[Any, Any] | None:
            with self._engine.connect() as conn:
                key = conn.execute(sa.select(api_keys_table).where(api_keys_table.c.key_id == key_id)).first()
                if key is None:
                    return None
                owner = conn.execute(sa.select(users_table).where(users_table.c.user_id == key.owner_user_id)).first()
                return key, owner

        found = await asyncio.to_thread(read)
        if found is None:
            return None
        key, owner = found
        owner_traits = self._roles.traits_of(UserRecord.from_row(owner).roles) if owner is not None else frozenset()
        return _KeyState(
            owner_user_id=key.owner_user_id,
            secret_sha256=key.secret_sha256,
            traits=frozenset(json.loads(key.scopes)) & owner_traits,
            usable=key.revoked_at is None and owner is not None and not owner.disabled,
            expires_at=key.expires_at,
            checked_at=self._clock.monotonic(),
            saved_used_at=key.last_used_at or 0,
        )

    async def _state(self, key_id: str) -> _KeyState | None:
        state = self._states.get(key_id)
        if state is None or self._clock.monotonic() - state.checked_at >= self._config.revocation_check_seconds:
            state = await self._load(key_id)
            if state is None:
                return None
            self._states[key_id] = state
            if len(self._states) > _MAX_CACHED:
                self._states.popitem(last=False)
        return state

    async def traits_of_live(self, key_id: str, user_id: str) -> frozenset[str]:
        """The current traits of a key still usable by `user_id` (API_KEY_INVALID
        otherwise): a delegation token from a key lives no longer than the key."""
        state = await self._state(key_id)
        if state is None or state.owner_user_id != user_id or not state.usable or self._now() >= state.expires_at:
            raise _invalid()
        return state.traits

    async def authenticate(self, presented: str) -> KeyUse:
        """The owner and traits behind an `x-api-key` value, or API_KEY_INVALID."""
        match = _KEY.match(presented.strip())
        if match is None:
            raise _invalid()
        key_id, secret = match[1], match[2]
        state = await self._state(key_id)
        if state is None:
            # Burn the same hash-and-compare as a known key.
            hmac.compare_digest(_sha256(secret), "0" * 64)
            raise _invalid()
        if not hmac.compare_digest(_sha256(secret), state.secret_sha256):
            raise _invalid()
        now = self._now()
        if not state.usable or now >= state.expires_at:
            raise _invalid()
        if now - state.saved_used_at >= self._config.touch_seconds:
            await self._touch(key_id, now)
            state.saved_used_at = now
        return KeyUse(key_id, state.owner_user_id, state.traits)

    async def _touch(self, key_id: str, now: int) -> None:
        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(api_keys_table.update().where(api_keys_table.c.key_id == key_id).values(last_used_at=now))

        await asyncio.to_thread(write)
