"""Object store: object versions with wrapped data keys, their sealed records, and wraps counted per key.

Written out column by column as `core/storage/_database.py` declared them when
this migration was added."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    sa.Table(
        "storage_objects",
        schema,
        sa.Column("owner", sa.String(63), primary_key=True),
        sa.Column("object_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("classification", sa.Integer, nullable=False),
        sa.Column("retain_until_ms", sa.BigInteger, nullable=True),
        sa.Column("shared_with", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
    )
    sa.Table(
        "storage_records",
        schema,
        sa.Column("owner", sa.String(63), primary_key=True),
        sa.Column("object_id", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "storage_key_wraps",
        schema,
        sa.Column("kek_id", sa.String(32), primary_key=True),
        sa.Column("wraps", sa.BigInteger, nullable=False),
    )
    schema.create_all(conn)
