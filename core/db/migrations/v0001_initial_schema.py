"""Initial schema: plugins, join tokens, certificates, audit log.

Written out column by column as the models stood when migrations began.
`checkfirst` adopts a database that an earlier release created with exactly
these tables (before there were migrations); on a fresh database it creates
everything.
"""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    sa.Table(
        "plugins",
        schema,
        sa.Column("plugin_id", sa.String(63), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("manifest_json", sa.Text, nullable=False),
        sa.Column("granted_traits", sa.Text, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(270), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "join_tokens",
        schema,
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("plugin_id", sa.String(63), nullable=False, index=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
    )
    sa.Table(
        "certificates",
        schema,
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("subject", sa.String(128), nullable=False, index=True),
        sa.Column("not_after", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    sa.Table(
        "audit_log",
        schema,
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
    schema.create_all(conn, checkfirst=True)
