"""The audit table: append-only, one row per record, chained by hash.

Portable types only, so the same declaration runs on SQLite and PostgreSQL.
`seq` is assigned by the writer (not autoincrement): the primary key on it is
what makes a fork impossible — two writers chaining onto the same head would
both claim the same seq and one transaction would fail.
"""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db import metadata

audit_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("trace_id", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
