"""Tables of plugin configuration. Times are integer epoch seconds (UTC).

A secret's `value` is AES-256-GCM ciphertext and `key_id` names the key that
sealed it; any other value is stored as text with `key_id` NULL. History keeps
`********` in place of a secret, never the secret."""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db import metadata

config_values_table = sa.Table(
    "plugin_config_values",
    metadata,
    sa.Column("plugin_id", sa.String(63), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

config_history_table = sa.Table(
    "plugin_config_history",
    metadata,
    sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plugin_id", sa.String(63), nullable=False, index=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=False),
    sa.Column("changed_by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
)
