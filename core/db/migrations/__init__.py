"""Versioned schema migrations, applied in order by `vivified.core.db.upgrade`.

To change the schema, add one module here, `vNNNN_<what>.py` with the next
number: a docstring whose first line says what it does, and
`upgrade(conn: sqlalchemy.Connection) -> None`. Declare its tables on a
MetaData of its own (never the shared `vivified.core.db.metadata`, which
follows the models as they are edited: a migration is a frozen record of one
change). `conn` is inside the upgrade's transaction; branch on
`conn.dialect.name` for what only one database has. A test fails while
`metadata` holds a table, column, index or key no migration creates.

Never edit a migration that has been released: databases out there are
already past it.
"""
