"""Engine creation for SQLite (embedded default) and PostgreSQL (production).

Every table of the core is declared on `metadata` so `metadata.create_all`
creates the whole schema on either database.
"""

from __future__ import annotations

import pathlib

import sqlalchemy as sa

metadata = sa.MetaData()


def sqlite_url(path: pathlib.Path) -> str:
    """The URL of a SQLite database file."""
    return f"sqlite+pysqlite:///{path}"


def create_engine_for(url: str) -> sa.Engine:
    """Create an engine and the schema. SQLite runs in WAL mode with full sync,
    so a committed transaction survives a crash of the core."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine
