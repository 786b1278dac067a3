"""Registry shared by core replicas: plugin health and heartbeats, a change log with a version, certificate issue times.

Every registry change bumps `registry_state.version` and appends the changed
subject to `registry_changes` in the same transaction; a replica applies the
changes after the version it last applied. Written out column by column as
`core/registry/_schema.py` declared them when this migration was added."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    state = sa.Table(
        "registry_state",
        schema,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "registry_changes",
        schema,
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("changed_at", sa.BigInteger, nullable=False),
    )
    schema.create_all(conn)
    conn.execute(sa.insert(state).values(id=1, version=0))
    for column in (
        "health VARCHAR(16) NOT NULL DEFAULT 'unknown'",
        "last_heartbeat_ms BIGINT",
    ):
        conn.execute(sa.text(f"ALTER TABLE plugins ADD COLUMN {column}"))
    conn.execute(sa.text("ALTER TABLE certificates ADD COLUMN issued_at BIGINT"))
