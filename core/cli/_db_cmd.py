"""`vivified db upgrade`: bring the database schema to this release's version.

The embedded SQLite database upgrades itself when the core starts; a
PostgreSQL database is upgraded only here, by its owner, before the cores of
a new release start (they refuse to run on an older schema).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from vivified.core.cli._client import data_dir
from vivified.core.cli._settings import check_environment
from vivified.core.db import (
    describe_url,
    grant_app_role,
    load_migrations,
    plain_engine,
    schema_version,
    sqlite_url,
    unavailable,
    upgrade,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="manage the database schema (migrations, PostgreSQL roles)")
    # Accepted after the verb too (`vivified db upgrade --database-url URL`): see `_options`.
    _database_flags(db)
    verbs = db.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser(
        "upgrade",
        help="apply pending migrations (idempotent; safe if several run at once)",
        description="Apply every pending migration in one transaction. Run it as the schema owner. "
        "With --app-role (PostgreSQL), also give the role the core logs in as exactly what it needs: "
        "SELECT and INSERT on audit_log (never UPDATE, DELETE or TRUNCATE), read/write on the other tables.",
    )
    up.add_argument(
        "--app-role", metavar="ROLE", help="PostgreSQL role the core logs in as; must exist and own nothing"
    )


def _database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="core data dir (default ./.vivified)")
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://owner@host:5432/vivified "
        "(default: $VIVIFIED_DATABASE_URL, else SQLite in the data dir)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str], say: Callable[[str], None]) -> int:
    """Run `db upgrade`; progress goes to `say` as it happens. Database
    errors propagate as DatabaseError for the caller to print."""
    check_environment(environ)
    directory = data_dir(args, environ)
    url = args.database_url or environ.get("VIVIFIED_DATABASE_URL")
    if url is None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        url = sqlite_url(directory / "vivified.db")
    engine = plain_engine(url)
    try:
        where = describe_url(engine.url)
        latest = load_migrations()[-1].version
        before = schema_version(engine)
        say(f"database {where}: schema version {before}, this release needs {latest}")
        applied = upgrade(engine, report=say)
        if applied:
            say(f"schema upgraded to version {applied[-1].version} ({len(applied)} migration(s) applied)")
        else:
            say(f"schema is current (version {schema_version(engine)}); nothing to apply")
        if args.app_role:
            for line in grant_app_role(engine, args.app_role):
                say(f"granted {args.app_role} on {line}")
        return 0
    except sa.exc.DBAPIError as exc:
        raise unavailable(exc, engine.url) from None
    finally:
        engine.dispose()
