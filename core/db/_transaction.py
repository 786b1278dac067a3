"""A write transaction that serialises writers from the first statement.

Readers of a chain head or a version number must not race: on PostgreSQL a
transaction-scoped advisory lock (released at commit or rollback) orders the
writers; on SQLite, `BEGIN IMMEDIATE` takes the database write lock before
the first read, so a second writer — another thread or another process —
waits (busy timeout) instead of reading a head that is about to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def write_transaction(engine: sa.Engine, *, pg_lock: int) -> Iterator[sa.Connection]:
    """One transaction that no other holder of `pg_lock` (PostgreSQL) or no
    other writer at all (SQLite) runs beside; commits on success."""
    with engine.connect() as conn, write_transaction_on(conn, pg_lock=pg_lock) as serialised:
        yield serialised


@contextlib.contextmanager
def write_transaction_on(conn: sa.Connection, *, pg_lock: int) -> Iterator[sa.Connection]:
    """`write_transaction` on a connection the caller holds (and closes), for
    a writer that runs one transaction after another on the same connection."""
    if conn.dialect.name == "postgresql":
        with conn.begin():
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(pg_lock)))
            yield conn
        return
    # pysqlite, left to itself, begins lazily before the first INSERT and
    # commits before every DDL statement; in autocommit mode it sends our
    # BEGIN IMMEDIATE / COMMIT as written, so reads, writes and DDL form one
    # transaction that holds the write lock throughout.
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        # Set once per connection: SQLAlchemy refuses to change it again
        # after the first statement, and a held connection keeps it.
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")
