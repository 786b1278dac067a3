"""Identity: users, their sessions and refresh tokens, MFA backup codes, API keys.

Written out column by column as `core/identity/_schema.py` declared them when
this migration was added."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    schema = sa.MetaData()
    sa.Table(
        "users",
        schema,
        sa.Column("user_id", sa.String(40), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, default=False),
        sa.Column("mfa_secret", sa.String(128), nullable=True),
        sa.Column("mfa_pending_secret", sa.String(128), nullable=True),
        sa.Column("mfa_last_step", sa.BigInteger, nullable=False, default=0),
        sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
        sa.Column("locked_until", sa.BigInteger, nullable=False, default=0),
        sa.Column("lockout_level", sa.Integer, nullable=False, default=0),
        sa.Column("mfa_failures", sa.Integer, nullable=False, default=0),
        sa.Column("mfa_locked_until", sa.BigInteger, nullable=False, default=0),
        sa.Column("mfa_lockout_level", sa.Integer, nullable=False, default=0),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )

    sa.Table(
        "user_sessions",
        schema,
        sa.Column("session_id", sa.String(43), primary_key=True),
        sa.Column("user_id", sa.String(40), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("revoke_reason", sa.String(32), nullable=True),
    )

    sa.Table(
        "refresh_tokens",
        schema,
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(43), nullable=False, index=True),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
    )

    sa.Table(
        "mfa_backup_codes",
        schema,
        sa.Column("code_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(40), nullable=False, index=True),
        sa.Column("used_at", sa.BigInteger, nullable=True),
    )

    sa.Table(
        "api_keys",
        schema,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("owner_user_id", sa.String(40), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    schema.create_all(conn)
