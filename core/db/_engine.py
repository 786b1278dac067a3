"""Engine creation for SQLite (embedded default) and PostgreSQL (production).

Every table of the core is declared on `metadata`; the schema itself is made
only by the versioned migrations in `vivified.core.db.migrations`, and a test
proves that the migrated schema equals `metadata` on both databases.
"""

from __future__ import annotations

import pathlib
import sqlite3
import time

import sqlalchemy as sa

from vivified.core.db._errors import DatabaseError, describe_url, unavailable
from vivified.core.db._migrate import require_current, upgrade

metadata = sa.MetaData()

_CONNECT_TIMEOUT_SECONDS = 10
"""An unreachable PostgreSQL stops the core within this, never a hang (K3)."""


def sqlite_url(path: pathlib.Path) -> str:
    """The URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def parse_url(url: str) -> sa.URL:
    """Parse a SQLAlchemy URL; a bare `postgresql://` means psycopg 3, the
    only PostgreSQL driver installed."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        # The text may hold a password: never echo it.
        raise DatabaseError(
            "the database URL is not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host:5432/vivified)"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {describe_url(parsed)}: use SQLite or PostgreSQL")
    return parsed


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL. Two connections switching a new file at once can get
    SQLITE_BUSY without the busy handler being consulted, so retry briefly."""
    for _ in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def plain_engine(url: str) -> sa.Engine:
    """An engine on `url` that leaves the schema alone (readers, `db upgrade`).

    SQLite runs in WAL mode with full sync, so a committed transaction
    survives a crash of the core."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _enter_wal(cur)
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": _CONNECT_TIMEOUT_SECONDS}
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except ImportError as exc:
        raise DatabaseError(f"no driver for {describe_url(parsed)}: {exc}") from None


def create_engine_for(url: str) -> sa.Engine:
    """An engine ready for the core.

    The embedded SQLite database upgrades itself, so `vivified up` stays one
    command. PostgreSQL, shared by several replicas and owned by a DBA, is
    upgraded only by `vivified db upgrade`: here it must already be current,
    or the core refuses to start (SchemaNotCurrent). An unreachable server
    raises DatabaseUnavailable; nothing ever falls back to another database.
    """
    engine = plain_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            upgrade(engine)
        else:
            require_current(engine)
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise unavailable(exc, engine.url) from None
    except BaseException:
        engine.dispose()
        raise
    return engine
