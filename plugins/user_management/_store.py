"""The directory's durable state: one SQLite file in the plugin's own data dir.

Each profile is keyed by the core user id. Writes are idempotent per event
(at-least-once delivery may hand the same event over twice), and the
onboarding state only moves forward: invited → welcomed → active, or to
failed (with a reason) from invited or welcomed; `active` is final."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

INVITED, WELCOMED, ACTIVE, FAILED = "invited", "welcomed", "active", "failed"
# From each state, the states an event may move a profile to.
_FORWARD: Mapping[str, frozenset[str]] = {
    INVITED: frozenset({WELCOMED, ACTIVE, FAILED}),
    WELCOMED: frozenset({ACTIVE, FAILED}),
    FAILED: frozenset({WELCOMED, ACTIVE}),
    ACTIVE: frozenset(),
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '',
    manager_user_id TEXT NOT NULL DEFAULT '',
    start_date TEXT NOT NULL DEFAULT '',
    onboarding_state TEXT NOT NULL,
    onboarding_reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""
EDITABLE = ("display_name", "department", "manager_user_id", "start_date")


@dataclass(frozen=True)
class ProfileRecord:
    """One stored profile."""

    user_id: str
    username: str
    display_name: str
    email: str
    department: str
    manager_user_id: str
    start_date: str
    onboarding_state: str
    onboarding_reason: str
    created_at: float
    updated_at: float


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ProfileStore:
    """Profiles in `<data_dir>/directory.db`; every method runs on a worker thread."""

    def __init__(self, data_dir: pathlib.Path, *, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.path = data_dir / "directory.db"
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _now(self) -> float:
        return self._clock().timestamp()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result

        return await asyncio.to_thread(locked)

    @staticmethod
    def _get(db: sqlite3.Connection, user_id: str) -> ProfileRecord | None:
        row = db.execute("SELECT * FROM profiles WHERE user_id = ?", (user_id,)).fetchone()
        return ProfileRecord(**dict(row)) if row is not None else None

    async def get(self, user_id: str) -> ProfileRecord | None:
        return await self._run(lambda db: self._get(db, user_id))

    async def page(self, after: str, limit: int) -> list[ProfileRecord]:
        def read(db: sqlite3.Connection) -> list[ProfileRecord]:
            rows = db.execute(
                "SELECT * FROM profiles WHERE user_id > ? ORDER BY user_id LIMIT ?", (after, limit)
            ).fetchall()
            return [ProfileRecord(**dict(r)) for r in rows]

        return await self._run(read)

    async def upsert_user(
        self, user_id: str, *, username: str = "", values: Mapping[str, str], state: str | None
    ) -> ProfileRecord:
        """Create the profile of a core user, or set what core identity owns
        (`username`, and `display_name`/`email` as given in `values`). `state`
        moves the onboarding state forward when allowed; None leaves it."""
        if not set(values) <= {"display_name", "email"}:
            raise ValueError("core identity owns only display_name and email")
        now = self._now()

        def write(db: sqlite3.Connection) -> ProfileRecord:
            found = self._get(db, user_id)
            if found is None:
                db.execute(
                    "INSERT INTO profiles (user_id, username, display_name, email, onboarding_state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        user_id,
                        username,
                        values.get("display_name", ""),
                        values.get("email", ""),
                        state or ACTIVE,
                        now,
                        now,
                    ),
                )
            else:
                moves = state is not None and state in _FORWARD[found.onboarding_state]
                merged = {"display_name": found.display_name, "email": found.email, **values}
                db.execute(
                    "UPDATE profiles SET username = ?, display_name = ?, email = ?, onboarding_state = ?,"
                    " onboarding_reason = ?, updated_at = ? WHERE user_id = ?",
                    (
                        username or found.username,
                        merged["display_name"],
                        merged["email"],
                        state if moves else found.onboarding_state,
                        "" if moves else found.onboarding_reason,
                        now,
                        user_id,
                    ),
                )
            record = self._get(db, user_id)
            if record is None:  # written in this very transaction
                raise RuntimeError("profile vanished inside its own transaction")
            return record

        return await self._run(write)

    async def advance(self, user_id: str, state: str, reason: str = "") -> ProfileRecord | None:
        """Move onboarding forward to `state` when allowed; None when no such profile."""
        now = self._now()

        def write(db: sqlite3.Connection) -> ProfileRecord | None:
            found = self._get(db, user_id)
            if found is None:
                return None
            if state in _FORWARD[found.onboarding_state]:
                db.execute(
                    "UPDATE profiles SET onboarding_state = ?, onboarding_reason = ?, updated_at = ? WHERE user_id = ?",
                    (state, reason, now, user_id),
                )
            return self._get(db, user_id)

        return await self._run(write)

    async def edit(self, user_id: str, values: Mapping[str, Any]) -> ProfileRecord | None:
        """Set directory-owned fields (`EDITABLE`); None when no such profile."""
        if not set(values) <= set(EDITABLE):
            raise ValueError(f"only {', '.join(EDITABLE)} may be edited")
        now = self._now()

        def write(db: sqlite3.Connection) -> ProfileRecord | None:
            if self._get(db, user_id) is None:
                return None
            columns = ", ".join(f"{name} = ?" for name in values)
            db.execute(
                f"UPDATE profiles SET {columns}, updated_at = ? WHERE user_id = ?",  # noqa: S608 - names from EDITABLE
                (*values.values(), now, user_id),
            )
            return self._get(db, user_id)

        return await self._run(write)
