"""Migrations on SQLite and PostgreSQL: the migrated schema is exactly
`metadata`, upgrades are idempotent, atomic, and safe when processes race."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Any

import pytest
import sqlalchemy as sa

import vivified.core
from vivified.core.db import (
    VERSION_TABLE,
    Migration,
    MigrationFailed,
    SchemaNotCurrent,
    load_migrations,
    metadata,
    plain_engine,
    require_current,
    schema_version,
    upgrade,
)

Schema = dict[str, dict[str, Any]]


def _declared_metadata() -> sa.MetaData:
    """`metadata` with every table the core declares: tables join it when
    their module is imported, so import every module of the core."""
    for info in pkgutil.walk_packages(vivified.core.__path__, "vivified.core."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return metadata


def _type(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str:
    return str(type_.compile(dialect=dialect))


def _schema_of_metadata(md: sa.MetaData, dialect: sa.Dialect) -> Schema:
    schema: Schema = {}
    for table in md.tables.values():
        schema[table.name] = {
            "columns": {c.name: (_type(c.type, dialect), c.nullable) for c in table.columns},
            "primary_key": [c.name for c in table.primary_key.columns],
            "indexes": {(i.name, tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes},
            "unique": {
                tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, sa.UniqueConstraint)
            },
            "foreign_keys": {
                (tuple(fk.column_keys), fk.referred_table.name, tuple(e.column.name for e in fk.elements))
                for fk in table.foreign_key_constraints
            },
        }
    return schema


def _schema_of_database(engine: sa.Engine) -> Schema:
    schema: Schema = {}
    inspector = sa.inspect(engine)
    for name in inspector.get_table_names():
        if name == VERSION_TABLE:
            continue
        schema[name] = {
            "columns": {
                c["name"]: (_type(c["type"], engine.dialect), c["nullable"]) for c in inspector.get_columns(name)
            },
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "indexes": {
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
                if not i.get("duplicates_constraint")  # PostgreSQL's index behind a UNIQUE constraint
            },
            "unique": {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)},
            "foreign_keys": {
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(name)
            },
        }
    return schema


def _differences(expected: Schema, actual: Schema) -> list[str]:
    problems = [f"table {t} is declared in metadata but no migration creates it" for t in expected.keys() - actual]
    problems += [f"table {t} is created by a migration but not declared in metadata" for t in actual.keys() - expected]
    for table in sorted(expected.keys() & actual.keys()):
        want, got = expected[table], actual[table]
        for column in sorted(want["columns"].keys() | got["columns"].keys()):
            if want["columns"].get(column) != got["columns"].get(column):
                problems.append(
                    f"{table}.{column}: metadata {want['columns'].get(column)}, migrated {got['columns'].get(column)}"
                )
        for facet in ("primary_key", "indexes", "unique", "foreign_keys"):
            if want[facet] != got[facet]:
                problems.append(f"{table} {facet}: metadata {want[facet]}, migrated {got[facet]}")
    return problems


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = plain_engine(database_url)
    yield engine
    engine.dispose()


def test_migrated_schema_is_exactly_metadata(engine: sa.Engine) -> None:
    declared = _declared_metadata()
    assert {"plugins", "join_tokens", "certificates", "audit_log"} <= set(declared.tables)
    upgrade(engine)
    problems = _differences(_schema_of_metadata(declared, engine.dialect), _schema_of_database(engine))
    assert problems == [], "\n".join(problems)


def test_a_column_no_migration_creates_is_reported(engine: sa.Engine) -> None:
    # The comparison above must be able to fail: a model edit without a migration.
    upgrade(engine)
    edited = sa.MetaData()
    for table in _declared_metadata().tables.values():
        table.to_metadata(edited)
    edited.tables["plugins"].append_column(sa.Column("owner_email", sa.Text, nullable=True))
    sa.Table("widgets", edited, sa.Column("widget_id", sa.String(32), primary_key=True))
    problems = _differences(_schema_of_metadata(edited, engine.dialect), _schema_of_database(engine))
    assert any("plugins.owner_email" in p for p in problems)
    assert "table widgets is declared in metadata but no migration creates it" in problems


def test_upgrade_applies_every_step_once_and_is_idempotent(engine: sa.Engine) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert schema_version(engine) == 0
    heard: list[str] = []
    applied = upgrade(engine, report=heard.append)
    assert [m.version for m in applied] == [m.version for m in migrations]
    assert heard == [f"applying {m.label}" for m in migrations]
    assert upgrade(engine) == []
    assert schema_version(engine) == migrations[-1].version
    require_current(engine)


def test_a_database_made_before_migrations_is_adopted(engine: sa.Engine) -> None:
    # Earlier releases created exactly the initial tables with create_all and
    # no version table; the first upgrade takes them over, data intact. (The
    # tables as the first migration declares them: later ones add columns.)
    from vivified.core.db.migrations import v0001_initial_schema

    with engine.begin() as conn:
        v0001_initial_schema.upgrade(conn)
    assert set(sa.inspect(engine).get_table_names()) == {"plugins", "join_tokens", "certificates", "audit_log"}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO certificates (serial, subject, not_after) VALUES ('ab', 'plugin/x', 1)"))
    assert [m.version for m in upgrade(engine)] == [m.version for m in load_migrations()]
    require_current(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT subject FROM certificates")).scalars().all() == ["plugin/x"]


def test_two_upgraders_racing_apply_each_step_exactly_once(database_url: str) -> None:
    engines = [plain_engine(database_url), plain_engine(database_url)]
    barrier = threading.Barrier(2)
    results: list[list[Migration]] = []
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            results.append(upgrade(engine))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        applied = sorted(m.version for result in results for m in result)
        assert applied == [m.version for m in load_migrations()]
        with engines[0].connect() as conn:
            versions = conn.execute(sa.text(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")).scalars().all()
        assert versions == applied
    finally:
        for engine in engines:
            engine.dispose()


def test_failed_step_rolls_back_the_whole_upgrade(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real = load_migrations()

    def broken(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    failing = Migration(len(real) + 1, "v9999_broken", "broken step", broken)
    monkeypatch.setattr("vivified.core.db._migrate.load_migrations", lambda: [*real, failing])
    with pytest.raises(MigrationFailed) as caught:
        upgrade(engine)
    message = str(caught.value)
    assert f"migration {failing.label} failed" in message
    assert "rolled back" in message and "no_such_table" in message
    # Atomic on both databases: not even the earlier steps or the version table remain.
    assert sa.inspect(engine).get_table_names() == []


def test_schema_behind_or_ahead_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(SchemaNotCurrent, match="vivified db upgrade"):
        require_current(engine)
    upgrade(engine)
    latest = load_migrations()[-1].version
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {VERSION_TABLE} WHERE version = :v"), {"v": latest})
    with pytest.raises(SchemaNotCurrent, match=f"at schema version {latest - 1}, this release needs {latest}"):
        require_current(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) VALUES (:v, 'x', 0)"),
            [{"v": latest}, {"v": latest + 1}],
        )
    with pytest.raises(SchemaNotCurrent, match="newer than this release"):
        require_current(engine)
    with pytest.raises(SchemaNotCurrent, match="newer than this release"):
        upgrade(engine)
