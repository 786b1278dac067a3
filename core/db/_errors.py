"""Database errors the core and the CLI report at start or during `db upgrade`.

Hierarchy::

    DatabaseError          root; the message names the database without its password
    ├── DatabaseUnavailable  the server cannot be reached or refuses the login
    ├── SchemaNotCurrent     the schema is behind (or ahead of) this release
    └── MigrationFailed      a migration step failed; its transaction was rolled back

These never reach a gRPC caller: they stop the process before it serves, so
they carry no ErrorInfo reason.
"""

from __future__ import annotations

import sqlalchemy as sa


class DatabaseError(Exception):
    """A database problem that stops the core or a `vivified db` command."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or the login is refused."""


class SchemaNotCurrent(DatabaseError):
    """The schema version is not the one this release needs."""


class MigrationFailed(DatabaseError):
    """A migration failed; nothing of the upgrade was committed."""


def describe_url(url: sa.URL) -> str:
    """The URL as it may be shown: the password masked."""
    return url.render_as_string(hide_password=True)


def driver_message(exc: BaseException, url: sa.URL) -> str:
    """The driver's own explanation of `exc` on one line, without the SQL
    statement SQLAlchemy appends, and with the password cut out should a
    driver ever echo it."""
    origin = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(origin).split()) or type(origin).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


_INSUFFICIENT_PRIVILEGE = "42501"


def unavailable(exc: sa.exc.DBAPIError, url: sa.URL) -> DatabaseUnavailable:
    """The error to raise for a driver failure: where, what the driver said,
    and for a missing privilege, who fixes it how."""
    message = f"cannot use database {describe_url(url)}: {driver_message(exc, url)}"
    if getattr(exc.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
        message += (
            "; the schema owner runs `vivified db upgrade`, with `--app-role ROLE` to grant the role "
            "the core logs in as what it needs"
        )
    return DatabaseUnavailable(message)
