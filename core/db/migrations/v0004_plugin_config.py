"""Plugin configuration: current values (secrets sealed) and their change history.

Written out column by column as `core/plugin_config/_schema.py` declared them
when this migration was added."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    sa.Table(
        "plugin_config_values",
        schema,
        sa.Column("plugin_id", sa.String(63), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "plugin_config_history",
        schema,
        sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plugin_id", sa.String(63), nullable=False, index=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("old_value", sa.Text, nullable=True),
        sa.Column("new_value", sa.Text, nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at", sa.BigInteger, nullable=False),
    )
    schema.create_all(conn)
