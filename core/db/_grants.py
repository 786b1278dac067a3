"""Least privilege for the role the core logs in as on PostgreSQL (E4).

The schema owner runs the migrations; the core itself should log in as a
separate role that can read and change state but can never rewrite the audit
trail. `grant_app_role` sets that role's privileges on every table of the
schema from scratch (REVOKE ALL, then GRANT), so running it again after a
migration brings new tables in and corrects any drift:

- `audit_log`: SELECT, INSERT — no UPDATE, DELETE or TRUNCATE.
- the version table: SELECT (the core checks the version at start).
- every other table: SELECT, INSERT, UPDATE, DELETE (never TRUNCATE,
  REFERENCES or TRIGGER); sequences: USAGE, SELECT.
"""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.db._errors import DatabaseError
from vivified.core.db._migrate import VERSION_TABLE

APPEND_ONLY_TABLES = frozenset({"audit_log", "plugin_config_history", "core_setting_history"})
"""Tables the application may only read and append to (the audit log, config histories)."""

_READ_ONLY_TABLES = frozenset({VERSION_TABLE})


def _privileges(table: str) -> str:
    if table in APPEND_ONLY_TABLES:
        return "SELECT, INSERT"
    if table in _READ_ONLY_TABLES:
        return "SELECT"
    return "SELECT, INSERT, UPDATE, DELETE"


def grant_app_role(engine: sa.Engine, role: str) -> list[str]:
    """Grant `role` exactly what the core needs on the current schema; return
    one line per table saying what it now holds.

    Raises DatabaseError on SQLite (no roles), for a role that does not exist,
    and for a role that owns tables or is a superuser: such a role bypasses
    grants (an owner can drop the trigger), so append-only would be a fiction.
    """
    if engine.dialect.name != "postgresql":
        raise DatabaseError("--app-role needs PostgreSQL: SQLite has no roles")
    preparer = engine.dialect.identifier_preparer
    quoted = preparer.quote_identifier(role)
    lines = []
    with engine.begin() as conn:
        found = conn.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if found is None:
            raise DatabaseError(
                f"role {role!r} does not exist; create it first, e.g. CREATE ROLE {quoted} LOGIN PASSWORD '…'"
            )
        if found.rolsuper:
            raise DatabaseError(f"role {role!r} is a superuser: the core must log in as an ordinary role")
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        owned = (
            conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tableowner = :r"),
                {"s": schema, "r": role},
            )
            .scalars()
            .all()
        )
        if owned:
            raise DatabaseError(
                f"role {role!r} owns {', '.join(sorted(owned))}: run migrations as a separate owner role "
                "so the core's role cannot alter the tables or their triggers"
            )
        tables = sorted(sa.inspect(conn).get_table_names(schema=schema))
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA {preparer.quote_identifier(schema)} TO {quoted}"))
        for table in tables:
            name = f"{preparer.quote_identifier(schema)}.{preparer.quote_identifier(table)}"
            privileges = _privileges(table)
            conn.execute(sa.text(f"REVOKE ALL ON TABLE {name} FROM {quoted}"))
            conn.execute(sa.text(f"GRANT {privileges} ON TABLE {name} TO {quoted}"))
            lines.append(f"{table}: {privileges}")
        conn.execute(
            sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {preparer.quote_identifier(schema)} TO {quoted}")
        )
    return lines
