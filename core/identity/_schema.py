"""Tables of user identity. Times are integer epoch seconds (UTC). Secrets are
stored only as hashes (passwords: Argon2id; refresh tokens and backup codes:
SHA-256 of 256/80-bit random values; activation tokens: SHA-256 of 256-bit random values), except the TOTP secret, which the core
must read back to check codes: it is sealed with AES-256-GCM under a key file
outside the database (`_secret_box`)."""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db import metadata

users_table = sa.Table(
    "users",
    metadata,
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
    # Added by migration 0006: onboarding. An invited user has no usable
    # password until it redeems its activation token (kept only as SHA-256).
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("display_name", sa.String(128), nullable=True),
    sa.Column("invited", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("activation_sha256", sa.String(64), nullable=True, index=True, unique=True),
    sa.Column("activation_expires_at", sa.BigInteger, nullable=True),
)

user_sessions_table = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("session_id", sa.String(43), primary_key=True),
    sa.Column("user_id", sa.String(40), nullable=False, index=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("revoke_reason", sa.String(32), nullable=True),
)

refresh_tokens_table = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(43), nullable=False, index=True),
    sa.Column("issued_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
)

mfa_backup_codes_table = sa.Table(
    "mfa_backup_codes",
    metadata,
    sa.Column("code_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(40), nullable=False, index=True),
    sa.Column("used_at", sa.BigInteger, nullable=True),
)

api_keys_table = sa.Table(
    "api_keys",
    metadata,
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
