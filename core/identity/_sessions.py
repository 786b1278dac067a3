"""Sessions: sign-in state behind access and refresh tokens.

An access token (15 min JWT) names its session (`sid`). Every call checks
that session: revoked (logout, password change, disable, role change, refresh
reuse) → SESSION_REVOKED; idle longer than the idle timeout or older than
the absolute lifetime → SESSION_EXPIRED. Session state is kept in memory and
re-read from the database when older than `revocation_check_seconds`, so a
revocation by this core applies to the very next call and one by another
replica within that bound. Verified tokens are cached (bounded, until they
expire), so a call costs a dict lookup, not an HMAC and a query.

Refresh tokens are opaque, stored as SHA-256, single use: each Refresh marks
the presented token used and issues a new one in the same family (session).
Presenting a used token again means it was stolen or replayed: the whole
family (the session, every token of it) is revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.errors import Unauthenticated
from vivified.core.identity._config import IdentityConfig
from vivified.core.identity._schema import (
    refresh_tokens_table,
    user_sessions_table,
    users_table,
)
from vivified.core.identity._tokens import ACCESS_TYPE, Claims, TokenError, TokenSigner
from vivified.core.identity._users import UserRecord
from vivified.core.traits import RoleCatalogue

_DOMAIN = "vivified.identity"
_MAX_SESSIONS_CACHED = 100_000


@dataclass(frozen=True)
class Tokens:
    """What a successful sign-in or refresh returns."""

    access_token: str
    access_expires_at: int
    refresh_token: str
    session_expires_at: int


@dataclass
class SessionState:
    """A session as last read from the database, plus unsaved activity."""

    user_id: str
    traits: frozenset[str]
    expires_at: int
    last_seen_at: int
    saved_seen_at: int
    revoked: bool
    checked_at: float


@dataclass(frozen=True)
class UserSession:
    """The verified user behind an access token."""

    user_id: str
    session_id: str
    traits: frozenset[str]


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _revoked(message: str = "the session was ended; sign in again") -> Unauthenticated:
    return Unauthenticated(message, reason="SESSION_REVOKED", domain=_DOMAIN)


def _expired() -> Unauthenticated:
    return Unauthenticated("the session timed out; sign in again", reason="SESSION_EXPIRED", domain=_DOMAIN)


def _refresh_invalid() -> Unauthenticated:
    return Unauthenticated("the refresh token is not valid", reason="REFRESH_TOKEN_INVALID", domain=_DOMAIN)


class Sessions:
    """Starts, refreshes, checks and ends user sessions."""

    def __init__(
        self, engine: sa.Engine, clock: Clock, signer: TokenSigner, roles: RoleCatalogue, config: IdentityConfig
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._signer = signer
        self._roles = roles
        self._config = config
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    def _access(self, user_id: str, session_id: str) -> tuple[str, int]:
        token, claims = self._signer.issue(ACCESS_TYPE, user_id, self._config.access_token_seconds, sid=session_id)
        return token, claims.expires_at

    async def start(self, user: UserRecord) -> Tokens:
        """Open a session for a user who has fully signed in."""
        now, session_id, refresh = self._now(), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = now + self._config.session_absolute_seconds

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    user_sessions_table.insert().values(
                        session_id=session_id,
                        user_id=user.user_id,
                        created_at=now,
                        last_seen_at=now,
                        expires_at=expires,
                    )
                )
                conn.execute(
                    refresh_tokens_table.insert().values(
                        token_sha256=_sha256(refresh), session_id=session_id, issued_at=now
                    )
                )

        await asyncio.to_thread(write)
        access, access_expires = self._access(user.user_id, session_id)
        return Tokens(access, access_expires, refresh, expires)

    async def refresh(self, refresh_token: str) -> Tokens:
        """Rotate a refresh token; a reused one revokes its whole family."""
        if not refresh_token or len(refresh_token) > 256:
            raise _refresh_invalid()
        digest, now, new = _sha256(refresh_token), self._now(), secrets.token_urlsafe(32)
        idle = self._config.session_idle_seconds

        def work() -> tuple[str, str, str, int]:
            with self._engine.begin() as conn:
                row = conn.execute(
                    sa.select(refresh_tokens_table).where(refresh_tokens_table.c.token_sha256 == digest)
                ).first()
                if row is None:
                    return "unknown", "", "", 0
                session = conn.execute(
                    sa.select(user_sessions_table).where(user_sessions_table.c.session_id == row.session_id)
                ).first()
                user = None
                if session is not None:
                    user = conn.execute(sa.select(users_table).where(users_table.c.user_id == session.user_id)).first()
                if session is None or session.revoked_at is not None or user is None or user.disabled:
                    return "revoked", row.session_id, "", 0
                marked = conn.execute(
                    refresh_tokens_table.update()
                    .where(refresh_tokens_table.c.token_sha256 == digest, refresh_tokens_table.c.used_at.is_(None))
                    .values(used_at=now)
                ).rowcount
                if marked != 1:
                    conn.execute(
                        user_sessions_table.update()
                        .where(user_sessions_table.c.session_id == row.session_id)
                        .values(revoked_at=now, revoke_reason="refresh_reuse")
                    )
                    return "reused", row.session_id, "", 0
                if now >= session.expires_at or now - session.last_seen_at > idle:
                    return "expired", row.session_id, "", 0
                conn.execute(
                    refresh_tokens_table.insert().values(
                        token_sha256=_sha256(new), session_id=row.session_id, issued_at=now
                    )
                )
                conn.execute(
                    user_sessions_table.update()
                    .where(user_sessions_table.c.session_id == row.session_id)
                    .values(last_seen_at=now)
                )
                return "ok", row.session_id, session.user_id, session.expires_at

        outcome, session_id, user_id, expires = await asyncio.to_thread(work)
        if outcome == "unknown":
            raise _refresh_invalid()
        if outcome == "reused":
            self._states.pop(session_id, None)
            raise Unauthenticated(
                "this refresh token was already used; the session is ended",
                reason="REFRESH_TOKEN_INVALID",
                domain=_DOMAIN,
            )
        if outcome == "revoked":
            raise _revoked()
        if outcome == "expired":
            raise _expired()
        access, access_expires = self._access(user_id, session_id)
        return Tokens(access, access_expires, new, expires)

    async def revoke(self, session_id: str, reason: str) -> None:
        """End one session (logout)."""
        now = self._now()

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    user_sessions_table.update()
                    .where(user_sessions_table.c.session_id == session_id, user_sessions_table.c.revoked_at.is_(None))
                    .values(revoked_at=now, revoke_reason=reason)
                )

        await asyncio.to_thread(write)
        self._states.pop(session_id, None)

    async def revoke_user(self, user_id: str, reason: str) -> None:
        """End every session of a user (password change, disable, roles, delete)."""
        now = self._now()

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    user_sessions_table.update()
                    .where(user_sessions_table.c.user_id == user_id, user_sessions_table.c.revoked_at.is_(None))
                    .values(revoked_at=now, revoke_reason=reason)
                )

        await asyncio.to_thread(write)
        for session_id in [s for s, state in self._states.items() if state.user_id == user_id]:
            self._states.pop(session_id, None)

    def _verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is not None and self._now() <= claims.expires_at + self._config.leeway_seconds:
            self._verified.move_to_end(token)
            return claims
        self._verified.pop(token, None)
        claims = self._signer.verify(token, ACCESS_TYPE)
        self._verified[token] = claims
        if len(self._verified) > self._config.token_cache_size:
            self._verified.popitem(last=False)
        return claims

    async def _load(self, session_id: str) -> SessionState | None:
        """Session joined with its user; a missing or disabled user revokes it."""

        def read() -> tuple[Any, UserRecord | None] | None:
            with self._engine.connect() as conn:
                session = conn.execute(
                    sa.select(user_sessions_table).where(user_sessions_table.c.session_id == session_id)
                ).first()
                if session is None:
                    return None
                user = conn.execute(sa.select(users_table).where(users_table.c.user_id == session.user_id)).first()
                return session, UserRecord.from_row(user) if user is not None else None

        found = await asyncio.to_thread(read)
        if found is None:
            return None
        session, user = found
        return SessionState(
            user_id=session.user_id,
            traits=self._roles.traits_of(user.roles) if user is not None else frozenset(),
            expires_at=session.expires_at,
            last_seen_at=session.last_seen_at,
            saved_seen_at=session.last_seen_at,
            revoked=session.revoked_at is not None or user is None or user.disabled,
            checked_at=self._clock.monotonic(),
        )

    async def authenticate(self, authorization: str) -> UserSession:
        """The user behind `authorization: Bearer <access token>`, or
        Unauthenticated (TOKEN_INVALID, TOKEN_EXPIRED, SESSION_REVOKED, SESSION_EXPIRED)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("authorization must be 'Bearer <access token>'")
        claims = self._verify(token.strip())
        session_id = claims.extra.get("sid")
        if not isinstance(session_id, str) or not session_id:
            raise TokenError("token names no session")
        state = await self._live(session_id, claims.subject)
        now = self._now()
        state.last_seen_at = now
        if now - state.saved_seen_at >= self._config.touch_seconds:
            await self._touch(session_id, now)
            state.saved_seen_at = now
        return UserSession(state.user_id, session_id, state.traits)

    async def _live(self, session_id: str, user_id: str) -> SessionState:
        """The session's state if it is `user_id`'s and neither revoked nor
        timed out (SESSION_REVOKED, SESSION_EXPIRED otherwise)."""
        state = self._states.get(session_id)
        if state is None or self._clock.monotonic() - state.checked_at >= self._config.revocation_check_seconds:
            state = await self._load(session_id)
            if state is None:
                raise _revoked()
            self._states[session_id] = state
            if len(self._states) > _MAX_SESSIONS_CACHED:
                self._states.popitem(last=False)
        if state.revoked or state.user_id != user_id:
            raise _revoked()
        now = self._now()
        if now >= state.expires_at or now - state.last_seen_at > self._config.session_idle_seconds:
            raise _expired()
        return state

    async def traits_of_live(self, session_id: str, user_id: str) -> frozenset[str]:
        """The current traits of a session still open for `user_id` — a
        delegation token is honoured only while the session it came from is
        (it does not count as the user's own activity)."""
        return (await self._live(session_id, user_id)).traits

    async def _touch(self, session_id: str, now: int) -> None:
        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    user_sessions_table.update()
                    .where(user_sessions_table.c.session_id == session_id, user_sessions_table.c.last_seen_at < now)
                    .values(last_seen_at=now)
                )

        await asyncio.to_thread(write)
