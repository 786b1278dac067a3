"""The gateway's durable record of what it sent: one SQLite file in its own
data directory, so a restart forgets nothing. It holds ids, statuses and SMTP
codes only: never an address, a subject or a body."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

QUEUED, PROCESSING, DELIVERED, FAILED = "queued", "processing", "delivered", "failed"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS emails (
    email_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    error_code TEXT NOT NULL DEFAULT '',
    provider_message_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class EmailRecord:
    email_id: str
    origin: str
    """`operator` (SendMessage), `event` (MessageSendRequested) or `welcome` (UserCreated)."""
    status: str
    detail: str
    error_code: str
    provider_message_id: str
    attempts: int
    updated_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EmailStore:
    """Statuses by email id; every write is committed before it returns."""

    def __init__(self, path: Path, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._clock = clock

    def get(self, email_id: str) -> EmailRecord | None:
        row = self._db.execute(
            "SELECT email_id, origin, status, detail, error_code, provider_message_id, attempts, updated_at "
            "FROM emails WHERE email_id = ?",
            (email_id,),
        ).fetchone()
        if row is None:
            return None
        email_id, origin, status, detail, error_code, provider_message_id, attempts, updated_at = row
        return EmailRecord(
            email_id=email_id,
            origin=origin,
            status=status,
            detail=detail,
            error_code=error_code,
            provider_message_id=provider_message_id,
            attempts=attempts,
            updated_at=dt.datetime.fromisoformat(updated_at),
        )

    def queue(self, email_id: str, origin: str) -> tuple[EmailRecord, bool]:
        """The record of `email_id`, created queued if new; (record, created)."""
        created = (
            self._db.execute(
                "INSERT OR IGNORE INTO emails (email_id, origin, status, updated_at) VALUES (?, ?, ?, ?)",
                (email_id, origin, QUEUED, self._clock().isoformat()),
            ).rowcount
            == 1
        )
        record = self.get(email_id)
        if record is None:  # pragma: no cover - just inserted
            raise RuntimeError(f"email {email_id} vanished")
        return record, created

    def update(
        self,
        email_id: str,
        status: str,
        *,
        detail: str = "",
        error_code: str = "",
        provider_message_id: str = "",
        attempted: bool = False,
    ) -> None:
        self._db.execute(
            "UPDATE emails SET status = ?, detail = ?, error_code = ?, provider_message_id = ?, "
            "attempts = attempts + ?, updated_at = ? WHERE email_id = ?",
            (status, detail, error_code, provider_message_id, int(attempted), self._clock().isoformat(), email_id),
        )

    def unfinished(self, origin: str) -> list[str]:
        rows = self._db.execute(
            "SELECT email_id FROM emails WHERE origin = ? AND status IN (?, ?)", (origin, QUEUED, PROCESSING)
        ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self._db.close()
