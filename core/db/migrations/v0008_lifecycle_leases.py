"""Lifecycle leases: one row per plugin naming the replica that makes its Init, health check and heartbeat sweep.

Written out column by column as `core/registry/_schema.py` declared them when
this migration was added. Existing active plugins get their lease from the
first replica whose sweep finds them without one."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    sa.Table(
        "plugin_lifecycle_leases",
        schema,
        sa.Column("plugin_id", sa.String(63), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    schema.create_all(conn)
