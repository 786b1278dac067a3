"""Audit log append-only trigger (PostgreSQL).

A statement trigger refuses UPDATE, DELETE and TRUNCATE on `audit_log` for
every role, the owner included, so the chain cannot be rewritten by a stray
statement; the application role additionally holds only SELECT and INSERT on
it (`vivified db upgrade --app-role`). A DBA who must remove rows (moving an
old range to an archive) does so deliberately, as the owner, in one
transaction that is itself visible in the catalog history::

    BEGIN;
    ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
    -- copy out first: \\copy (SELECT * FROM audit_log WHERE seq <= N) TO 'audit-1-N.csv' CSV
    DELETE FROM audit_log WHERE seq <= N;
    ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
    COMMIT;

`vivified audit verify` checks the chain from seq 1, so verify the archive
(restored beside the checkpoints file) before removing anything. SQLite has
no roles: whoever can write the file can drop any trigger, so there the
signed checkpoints outside the database are the protection, and this step
changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

_FUNCTION = """
CREATE OR REPLACE FUNCTION vivified_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- No format placeholders: drivers read a percent sign as a parameter.
  RAISE EXCEPTION USING MESSAGE = 'audit_log is append-only: ' || TG_OP || ' refused',
          ERRCODE = 'insufficient_privilege',
          HINT = 'archiving is a deliberate DBA step, see migration 0002 of vivified.core.db';
END;
$$
"""

_TRIGGER = """
CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION vivified_audit_log_append_only()
"""


def upgrade(conn: sa.Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(_FUNCTION)
    conn.exec_driver_sql(_TRIGGER)
