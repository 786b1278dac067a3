"""The audit writer's two statements, prepared once per dialect.

Each batch reads the chain head and inserts its records. Built as SQLAlchemy
Core constructs per batch, the two cost several times the database's own
work (construction, cache-key lookup, per-row parameter processing), so
they are compiled once here and run with `exec_driver_sql`: the same SQL
text, the same bind processing of every column (e.g. SQLite's storage
format for `time`), and failures still raised as `sqlalchemy.exc.DBAPIError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from vivified.core.audit._record import GENESIS_HASH, StoredRecord
from vivified.core.audit._table import audit_table

_Params = tuple[Any, ...] | dict[str, Any]


class WriterStatements:
    """The head query and the batch insert at driver level for one dialect."""

    def __init__(self, dialect: sa.Dialect) -> None:
        seq, hash_ = audit_table.c.seq, audit_table.c.hash
        head = sa.select(seq, hash_).order_by(seq.desc()).limit(1)
        self._head = str(head.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        insert = audit_table.insert().compile(dialect=dialect)
        self._insert = insert.string
        columns = [column.key for column in audit_table.columns]
        if set(insert.params) != set(columns):
            raise RuntimeError("the audit insert does not bind every column")
        # Positional drivers (SQLite) take tuples in the statement's order,
        # named ones (psycopg) take the row mapping itself.
        self._order: Sequence[str] | None = insert.positiontup if insert.positional else None
        processors: list[tuple[str, Callable[[Any], Any]]] = []
        for column in audit_table.columns:
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((column.key, process))
        self._processors = tuple(processors)

    def read_head(self, conn: sa.Connection) -> tuple[int, str]:
        """(seq, hash) of the newest record, or the genesis head of an empty log."""
        row = conn.exec_driver_sql(self._head).first()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def insert(self, conn: sa.Connection, records: Sequence[StoredRecord]) -> None:
        """Insert `records` in one driver-level executemany."""
        conn.exec_driver_sql(self._insert, [self._params(record.as_row()) for record in records])

    def _params(self, row: dict[str, object]) -> _Params:
        for key, process in self._processors:
            row[key] = process(row[key])
        return row if self._order is None else tuple(row[key] for key in self._order)
