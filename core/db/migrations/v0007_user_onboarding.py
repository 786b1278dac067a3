"""Users gain an email address, a display name and invitations (activation token hash and expiry).

Written out column by column as `core/identity/_schema.py` declared them when
this migration was added. Existing users are not invited (server default false)."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    columns = (
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("display_name", sa.String(128), nullable=True),
        sa.Column("invited", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("activation_sha256", sa.String(64), nullable=True),
        sa.Column("activation_expires_at", sa.BigInteger, nullable=True),
    )
    preparer = conn.dialect.identifier_preparer
    for column in columns:
        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {preparer.quote('users')} ADD COLUMN {ddl}"))
    table = sa.Table("users", sa.MetaData(), sa.Column("activation_sha256", sa.String(64)))
    sa.Index("ix_users_activation_sha256", table.c.activation_sha256, unique=True).create(conn)
