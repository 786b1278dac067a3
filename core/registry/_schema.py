"""Tables of the plugin registry. Times are integer epoch seconds (UTC), which
compare the same way on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db import metadata

plugins_table = sa.Table(
    "plugins",
    metadata,
    sa.Column("plugin_id", sa.String(63), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("manifest_json", sa.Text, nullable=False),
    sa.Column("granted_traits", sa.Text, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(270), nullable=False, default=""),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("health", sa.String(16), nullable=False, server_default="unknown"),
    sa.Column("last_heartbeat_ms", sa.BigInteger, nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=False, server_default=""),
)

join_tokens_table = sa.Table(
    "join_tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("plugin_id", sa.String(63), nullable=False, index=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
)

certificates_table = sa.Table(
    "certificates",
    metadata,
    sa.Column("serial", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(128), nullable=False, index=True),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("issued_at", sa.BigInteger, nullable=True),
)

registry_state_table = sa.Table(
    "registry_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)
"""One row (id 1): the registry's version, bumped by every change. Writers
update it first in their transaction, so its row lock orders them and the
versions in `registry_changes` become visible in increasing order."""

registry_changes_table = sa.Table(
    "registry_changes",
    metadata,
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("changed_at", sa.BigInteger, nullable=False),
)
"""What each version changed: `plugin/<id>` or `operator/<name>`."""

lifecycle_leases_table = sa.Table(
    "plugin_lifecycle_leases",
    metadata,
    sa.Column("plugin_id", sa.String(63), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)
"""Which replica makes a plugin's lifecycle calls (Init, its health check, the
heartbeat sweep) until `expires_ms` (epoch milliseconds); renewed by the
holder's sweep, taken over by another replica once it has expired."""
