"""Tables of runtime overrides of core settings. Times are integer epoch seconds (UTC).

`core_setting_overrides` holds the override in force for each key (as the
canonical text of its typed value); `core_setting_history` every change, a
cleared override having `new_value` NULL. History is append-only for the
core's database role on PostgreSQL (`vivified db upgrade --app-role`)."""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db import metadata

overrides_table = sa.Table(
    "core_setting_overrides",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

history_table = sa.Table(
    "core_setting_history",
    metadata,
    sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, index=True),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    sa.Column("changed_by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
)
