"""Plugin artifact integrity: `plugins.artifact_sha256`, the sha256 of the plugin's code as approved.

Existing approvals get an empty value (no artifact recorded); a supervisor
starting such a plugin records none to compare against until it is approved
again."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE plugins ADD COLUMN artifact_sha256 VARCHAR(64) NOT NULL DEFAULT ''"))
