"""The users table: accounts, roles, password hashes and lockout counters.

Lockout state lives in the database, so a restart does not reset it (B9, B10).
Each method runs its SQL on a worker thread and commits before returning."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.errors import AlreadyExists, NotFound
from vivified.core.identity._schema import (
    api_keys_table,
    mfa_backup_codes_table,
    refresh_tokens_table,
    user_sessions_table,
    users_table,
)

_DOMAIN = "vivified.identity"
T = TypeVar("T")


@dataclass(frozen=True)
class UserRecord:
    """One user as stored."""

    user_id: str
    username: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool
    mfa_secret: str | None
    mfa_pending_secret: str | None
    mfa_last_step: int
    failed_logins: int
    locked_until: int
    lockout_level: int
    mfa_failures: int
    mfa_locked_until: int
    mfa_lockout_level: int
    created_at: int
    updated_at: int
    email: str | None = None
    display_name: str | None = None
    invited: bool = False
    activation_sha256: str | None = None
    activation_expires_at: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> UserRecord:
        values = dict(row._mapping)
        values["roles"] = tuple(json.loads(values["roles"]))
        return cls(**values)


def not_found() -> NotFound:
    """The one answer for a user that does not exist or that the caller may not see."""
    return NotFound("no such user", reason="USER_NOT_FOUND", domain=_DOMAIN)


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Lockout:
    """Counter policy shared by the password and the MFA counters: after
    `threshold` failures the counter locks for `base_seconds`, doubling with
    each further lock up to `max_seconds` (temporary, escalating, never permanent)."""

    threshold: int
    base_seconds: int
    max_seconds: int

    def lock_seconds(self, level: int) -> int:
        """Length of the lock that follows `level` earlier locks."""
        # typeshed types int ** int as Any (a negative exponent gives a float); level is >= 0.
        factor: int = 2 ** min(level, 20)
        return min(self.base_seconds * factor, self.max_seconds)

    def failure_values(self, failures: Any, locked_until: Any, level: Any, now: int) -> dict[Any, Any]:
        """SQL SET values counting one failure on the given columns. Computed
        by the database from the row's current values in one UPDATE, so
        concurrent failures are all counted (no read-modify-write race)."""
        reached = failures + 1 >= self.threshold
        seconds = sa.case(
            *((level == n, self.lock_seconds(n)) for n in range(self.max_level())), else_=self.max_seconds
        )
        return {
            failures: sa.case((reached, 0), else_=failures + 1),
            locked_until: sa.case((reached, now + seconds), else_=locked_until),
            level: sa.case((reached, level + 1), else_=level),
        }

    def max_level(self) -> int:
        """The first level whose lock is already capped at max_seconds."""
        level = 0
        while self.lock_seconds(level) < self.max_seconds and level < 20:
            level += 1
        return level


class UserStore:
    """CRUD on users, with lockout and MFA bookkeeping."""

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def now(self) -> int:
        return int(self._clock.now().timestamp())

    async def _run(self, fn: Callable[[sa.Connection], T]) -> T:
        def work() -> T:
            with self._engine.begin() as conn:
                return fn(conn)

        return await asyncio.to_thread(work)

    def create_now(
        self,
        username: str,
        password_hash: str,
        roles: tuple[str, ...],
        *,
        email: str | None = None,
        display_name: str | None = None,
        activation: tuple[str, int] | None = None,
    ) -> UserRecord:
        """Insert a user (the CLI calls this without an event loop). With
        `activation` (token SHA-256, expiry) the user is invited: it has no
        usable password until it redeems the token."""
        now = self.now()
        row = {
            "user_id": "usr_" + secrets.token_hex(12),
            "username": username,
            "password_hash": password_hash,
            "roles": json.dumps(sorted(roles)),
            "disabled": False,
            "mfa_secret": None,
            "mfa_pending_secret": None,
            "mfa_last_step": 0,
            "failed_logins": 0,
            "locked_until": 0,
            "lockout_level": 0,
            "mfa_failures": 0,
            "mfa_locked_until": 0,
            "mfa_lockout_level": 0,
            "created_at": now,
            "updated_at": now,
            "email": email,
            "display_name": display_name,
            "invited": activation is not None,
            "activation_sha256": activation[0] if activation else None,
            "activation_expires_at": activation[1] if activation else None,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(users_table.insert().values(**row))
        except sa.exc.IntegrityError:
            raise AlreadyExists(
                f"username {username!r} is taken", reason="USER_ALREADY_EXISTS", domain=_DOMAIN
            ) from None
        return UserRecord(**{**row, "roles": tuple(sorted(roles))})  # type: ignore[arg-type]

    async def create(
        self,
        username: str,
        password_hash: str,
        roles: tuple[str, ...],
        *,
        email: str | None = None,
        display_name: str | None = None,
        activation: tuple[str, int] | None = None,
    ) -> UserRecord:
        return await asyncio.to_thread(
            functools.partial(
                self.create_now,
                username,
                password_hash,
                roles,
                email=email,
                display_name=display_name,
                activation=activation,
            )
        )

    async def redeem_activation(self, token_sha256: str, password_hash: str) -> tuple[str, UserRecord | None]:
        """Spend an activation token once, setting the first password, in one
        conditional UPDATE (two concurrent redemptions: one wins). Returns
        ("ok", user), or (why, None) with why `unknown`, `used`, `expired`
        or `disabled` (for the audit record; the caller answers all alike).
        The hash stays after use, so a second try is told apart as `used`."""
        c, now = users_table.c, self.now()

        def write(conn: sa.Connection) -> tuple[str, UserRecord | None]:
            changed = conn.execute(
                users_table.update()
                .where(
                    c.activation_sha256 == token_sha256,
                    c.invited.is_(True),
                    c.disabled.is_(False),
                    c.activation_expires_at > now,
                )
                .values(password_hash=password_hash, invited=False, activation_expires_at=None, updated_at=now)
            ).rowcount
            row = conn.execute(sa.select(users_table).where(c.activation_sha256 == token_sha256)).first()
            if changed == 1 and row is not None:
                return "ok", UserRecord.from_row(row)
            if row is None:
                return "unknown", None
            if not row.invited:
                return "used", None
            return ("disabled" if row.disabled else "expired"), None

        return await self._run(write)

    async def by_username(self, username: str) -> UserRecord | None:
        def read(conn: sa.Connection) -> UserRecord | None:
            row = conn.execute(sa.select(users_table).where(users_table.c.username == username)).first()
            return UserRecord.from_row(row) if row else None

        return await self._run(read)

    async def get(self, user_id: str) -> UserRecord | None:
        def read(conn: sa.Connection) -> UserRecord | None:
            row = conn.execute(sa.select(users_table).where(users_table.c.user_id == user_id)).first()
            return UserRecord.from_row(row) if row else None

        return await self._run(read)

    async def require(self, user_id: str) -> UserRecord:
        user = await self.get(user_id)
        if user is None:
            raise not_found()
        return user

    async def page(self, after: str, limit: int) -> list[UserRecord]:
        def read(conn: sa.Connection) -> list[UserRecord]:
            query = sa.select(users_table).where(users_table.c.username > after).order_by(users_table.c.username)
            return [UserRecord.from_row(r) for r in conn.execute(query.limit(limit)).all()]

        return await self._run(read)

    async def update(self, user_id: str, **values: Any) -> UserRecord:
        """Set columns of a user; raise NOT_FOUND when it does not exist."""
        if "roles" in values:
            values["roles"] = json.dumps(sorted(values["roles"]))

        def write(conn: sa.Connection) -> UserRecord:
            result = conn.execute(
                users_table.update().where(users_table.c.user_id == user_id).values(updated_at=self.now(), **values)
            )
            if result.rowcount != 1:
                raise not_found()
            return UserRecord.from_row(
                conn.execute(sa.select(users_table).where(users_table.c.user_id == user_id)).one()
            )

        return await self._run(write)

    async def delete(self, user_id: str) -> None:
        def write(conn: sa.Connection) -> None:
            if conn.execute(users_table.delete().where(users_table.c.user_id == user_id)).rowcount != 1:
                raise not_found()
            sessions = sa.select(user_sessions_table.c.session_id).where(user_sessions_table.c.user_id == user_id)
            conn.execute(refresh_tokens_table.delete().where(refresh_tokens_table.c.session_id.in_(sessions)))
            conn.execute(user_sessions_table.delete().where(user_sessions_table.c.user_id == user_id))
            conn.execute(mfa_backup_codes_table.delete().where(mfa_backup_codes_table.c.user_id == user_id))
            conn.execute(api_keys_table.delete().where(api_keys_table.c.owner_user_id == user_id))

        await self._run(write)

    async def reset_mfa(self, user_id: str) -> UserRecord:
        """Remove a user's second factor in one transaction: the TOTP secret,
        any pending enrolment, the backup codes and the MFA counters. The last
        used step goes too: it belonged to the old secret. NOT_FOUND when the
        user does not exist."""
        c = users_table.c

        def write(conn: sa.Connection) -> UserRecord:
            result = conn.execute(
                users_table.update()
                .where(c.user_id == user_id)
                .values(
                    mfa_secret=None,
                    mfa_pending_secret=None,
                    mfa_last_step=0,
                    mfa_failures=0,
                    mfa_locked_until=0,
                    mfa_lockout_level=0,
                    updated_at=self.now(),
                )
            )
            if result.rowcount != 1:
                raise not_found()
            conn.execute(mfa_backup_codes_table.delete().where(mfa_backup_codes_table.c.user_id == user_id))
            return UserRecord.from_row(conn.execute(sa.select(users_table).where(c.user_id == user_id)).one())

        return await self._run(write)

    async def take_attempt(self, user_id: str, policy: Lockout, *, mfa: bool) -> bool:
        """Count one attempt against the password (or MFA) counter before it is
        checked, in one UPDATE computed from the row's current values; False
        when the counter is locked. Counting first means concurrent guesses can
        never exceed the threshold, on one core or several; a success resets
        the counter (`login_succeeded`, `mfa_step_used`, `use_backup_code`)."""
        c, now = users_table.c, self.now()
        failures, until, level = (
            (c.mfa_failures, c.mfa_locked_until, c.mfa_lockout_level)
            if mfa
            else (c.failed_logins, c.locked_until, c.lockout_level)
        )

        def write(conn: sa.Connection) -> bool:
            # While locked nothing is counted, so attempts do not extend the lock.
            result = conn.execute(
                users_table.update()
                .where(c.user_id == user_id, until <= now)
                .values(policy.failure_values(failures, until, level, now))
            )
            return result.rowcount == 1

        return await self._run(write)

    async def login_succeeded(self, user: UserRecord, password_hash: str | None) -> UserRecord:
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": 0, "lockout_level": 0}
        if password_hash is not None:
            values["password_hash"] = password_hash
        return await self.update(user.user_id, **values)

    async def mfa_step_used(self, user_id: str, step: int) -> bool:
        """Record a TOTP step as used unless a later or equal one already was;
        False means a concurrent call used it first (replay)."""

        def write(conn: sa.Connection) -> bool:
            result = conn.execute(
                users_table.update()
                .where(users_table.c.user_id == user_id, users_table.c.mfa_last_step < step)
                .values(mfa_last_step=step, mfa_failures=0, mfa_locked_until=0, mfa_lockout_level=0)
            )
            return result.rowcount == 1

        return await self._run(write)

    async def set_backup_codes(self, user_id: str, codes: list[str]) -> None:
        def write(conn: sa.Connection) -> None:
            conn.execute(mfa_backup_codes_table.delete().where(mfa_backup_codes_table.c.user_id == user_id))
            conn.execute(api_keys_table.delete().where(api_keys_table.c.owner_user_id == user_id))
            conn.execute(
                mfa_backup_codes_table.insert(),
                [{"code_sha256": code_sha256(c), "user_id": user_id, "used_at": None} for c in codes],
            )

        await self._run(write)

    async def use_backup_code(self, user_id: str, code: str) -> bool:
        """Spend a backup code once; False when unknown or already used."""
        digest, now = code_sha256(code), self.now()

        def write(conn: sa.Connection) -> bool:
            result = conn.execute(
                mfa_backup_codes_table.update()
                .where(
                    mfa_backup_codes_table.c.code_sha256 == digest,
                    mfa_backup_codes_table.c.user_id == user_id,
                    mfa_backup_codes_table.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            if result.rowcount == 1:
                conn.execute(
                    users_table.update()
                    .where(users_table.c.user_id == user_id)
                    .values(mfa_failures=0, mfa_locked_until=0, mfa_lockout_level=0)
                )
            return result.rowcount == 1

        return await self._run(write)
