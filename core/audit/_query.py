"""Filtered, paged reads of the audit log (newest first), for the query service."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from vivified.core.audit._record import StoredRecord
from vivified.core.audit._table import audit_table


@dataclass(frozen=True)
class AuditFilter:
    """What to select; empty or None fields do not filter."""

    actor: str = ""
    action: str = ""
    decision: str = ""
    start: dt.datetime | None = None
    """At or after (UTC)."""
    end: dt.datetime | None = None
    """Before (UTC)."""
    before_seq: int | None = None
    """Only records older than this seq (the page cursor)."""
    trace_id: str = ""
    """Only the records of one trace."""


def query(engine: sa.Engine, where: AuditFilter, limit: int) -> list[StoredRecord]:
    """Up to `limit` matching records, newest first (keyset paged by seq)."""
    table = audit_table
    select = sa.select(table).order_by(table.c.seq.desc()).limit(limit)
    for column, value in (
        (table.c.actor, where.actor),
        (table.c.action, where.action),
        (table.c.decision, where.decision),
        (table.c.trace_id, where.trace_id),
    ):
        if value:
            select = select.where(column == value)
    if where.start is not None:
        select = select.where(table.c.time >= where.start.astimezone(dt.UTC))
    if where.end is not None:
        select = select.where(table.c.time < where.end.astimezone(dt.UTC))
    if where.before_seq is not None:
        select = select.where(table.c.seq < where.before_seq)
    with engine.connect() as conn:
        return [StoredRecord.from_row(row) for row in conn.execute(select).mappings()]
