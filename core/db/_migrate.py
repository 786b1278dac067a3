"""The migration runner: ordered, versioned steps and a version table.

A migration is one module `vivified.core.db.migrations.vNNNN_<name>` with a
docstring (its first line is the description) and `upgrade(conn)`. Versions
are the numbers in the module names and must run 1, 2, 3… without gaps, so
adding a migration is adding one file.

`upgrade(engine)` applies every pending step and records each in
`vivified_schema_version`, all in one `write_transaction`: either the
database moves to the latest version or it stays where it was. Two processes
racing are serialised before the version table is even read (an advisory
lock on PostgreSQL, the write lock on SQLite), so the second one finds the
work done and applies nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import sqlalchemy as sa

from vivified.core.clock import Clock, SystemClock
from vivified.core.db._errors import (
    MigrationFailed,
    SchemaNotCurrent,
    describe_url,
    driver_message,
)
from vivified.core.db._transaction import write_transaction

VERSION_TABLE = "vivified_schema_version"
_PG_LOCK_KEY = 0x766976_6D696772  # "viv" "migr"; the audit writer uses another key
_MODULE_NAME = re.compile(r"^v(\d{4})_[a-z0-9_]+$")

_versions = sa.Table(
    VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One versioned step."""

    version: int
    name: str
    description: str
    apply: Callable[[sa.Connection], None]

    @property
    def label(self) -> str:
        """e.g. `0001 initial schema`, as progress and errors print it."""
        return f"{self.version:04d} {self.description}"


def _from_module(module: ModuleType, version: int) -> Migration:
    apply = getattr(module, "upgrade", None)
    doc = (module.__doc__ or "").strip()
    if not callable(apply) or not doc:
        raise RuntimeError(f"migration {module.__name__} needs a docstring and upgrade(conn)")
    return Migration(version, module.__name__.rpartition(".")[2], doc.splitlines()[0].rstrip("."), apply)


def load_migrations() -> list[Migration]:
    """Every migration in version order; a gap or a duplicate version is a
    packaging error and raises RuntimeError."""
    from vivified.core.db import migrations as package

    found: dict[int, Migration] = {}
    for info in pkgutil.iter_modules(package.__path__):
        match = _MODULE_NAME.match(info.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations claim version {version}: {found[version].name}, {info.name}")
        found[version] = _from_module(importlib.import_module(f"{package.__name__}.{info.name}"), version)
    if sorted(found) != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1..n without gaps, found {sorted(found)}")
    return [found[v] for v in sorted(found)]


def _version_in(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return 0
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_versions.c.version), 0))).scalar_one())


def schema_version(engine: sa.Engine) -> int:
    """The version the database is at; 0 for an empty database."""
    with engine.connect() as conn:
        return _version_in(conn)


def upgrade(
    engine: sa.Engine, *, clock: Clock | None = None, report: Callable[[str], None] | None = None
) -> list[Migration]:
    """Apply every pending migration in one transaction; return those applied
    (empty when the schema was current). `report` hears each step as it starts.

    Raises SchemaNotCurrent when the database is newer than this release, and
    MigrationFailed (after rolling everything back) when a step fails.
    """
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    now = int((clock or SystemClock()).now().timestamp())
    with write_transaction(engine, pg_lock=_PG_LOCK_KEY) as conn:
        _versions.create(conn, checkfirst=True)
        current = _version_in(conn)
        if current > latest:
            raise SchemaNotCurrent(
                f"database {describe_url(engine.url)} is at schema version {current}, newer than this "
                f"release knows ({latest}); run a release that includes that migration"
            )
        pending = [m for m in migrations if m.version > current]
        for migration in pending:
            if report is not None:
                report(f"applying {migration.label}")
            try:
                migration.apply(conn)
            except sa.exc.DBAPIError as exc:
                raise MigrationFailed(
                    f"migration {migration.label} failed on {describe_url(engine.url)}: "
                    f"{driver_message(exc, engine.url)}; the upgrade was rolled back, the schema "
                    f"stays at version {current}"
                ) from None
            conn.execute(
                _versions.insert().values(version=migration.version, description=migration.description, applied_at=now)
            )
    return pending


def require_current(engine: sa.Engine) -> None:
    """Raise SchemaNotCurrent unless the database is at the latest version."""
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    current = schema_version(engine)
    where = describe_url(engine.url)
    if current < latest:
        raise SchemaNotCurrent(
            f"database {where} is at schema version {current}, this release needs {latest}: "
            f"run `vivified db upgrade --database-url <url>` (as the schema owner) before starting the core"
        )
    if current > latest:
        raise SchemaNotCurrent(
            f"database {where} is at schema version {current}, newer than this release knows "
            f"({latest}): run the release that migrated it"
        )
