"""Relational state: one SQLAlchemy MetaData for every table, versioned
migrations that create it, and the engine factory.

- `create_engine_for(url)`: the core's engine; SQLite upgrades itself,
  PostgreSQL must already be current (`vivified db upgrade`).
- `plain_engine(url)`: an engine that leaves the schema alone.
- `upgrade(engine)`: apply pending migrations, safe with racing processes.
- `grant_app_role(engine, role)`: least privilege for the core's login role
  on PostgreSQL; `audit_log` is SELECT and INSERT only.
"""

from vivified.core.db._engine import (
    create_engine_for,
    metadata,
    parse_url,
    plain_engine,
    sqlite_url,
)
from vivified.core.db._errors import (
    DatabaseError,
    DatabaseUnavailable,
    MigrationFailed,
    SchemaNotCurrent,
    describe_url,
    driver_message,
    unavailable,
)
from vivified.core.db._grants import grant_app_role
from vivified.core.db._migrate import (
    VERSION_TABLE,
    Migration,
    load_migrations,
    require_current,
    schema_version,
    upgrade,
)
from vivified.core.db._notify import wake_on_notify
from vivified.core.db._transaction import write_transaction, write_transaction_on

__all__ = [
    "VERSION_TABLE",
    "DatabaseError",
    "DatabaseUnavailable",
    "Migration",
    "MigrationFailed",
    "SchemaNotCurrent",
    "create_engine_for",
    "describe_url",
    "driver_message",
    "grant_app_role",
    "load_migrations",
    "metadata",
    "parse_url",
    "plain_engine",
    "require_current",
    "schema_version",
    "sqlite_url",
    "unavailable",
    "upgrade",
    "write_transaction",
    "write_transaction_on",
    "wake_on_notify",
]
