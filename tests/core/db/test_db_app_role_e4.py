"""E4 on PostgreSQL: the audit table is append-only at the database level.

The core's login role holds SELECT and INSERT on `audit_log` and nothing
more, so UPDATE, DELETE and TRUNCATE fail with a permission error while the
audit writer's INSERTs work; a trigger refuses rewrites even to the owner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from support.postgres_server import APP_ROLE, PostgresServer
from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner, verify
from vivified.core.clock import SystemClock
from vivified.core.db import (
    DatabaseError,
    DatabaseUnavailable,
    create_engine_for,
    grant_app_role,
    plain_engine,
    upgrade,
)

INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture
def owner(postgres: PostgresServer, postgres_database: str) -> Iterator[sa.Engine]:
    engine = plain_engine(postgres.url(postgres_database))
    upgrade(engine)
    yield engine
    engine.dispose()


def _sqlstate(engine: sa.Engine, statement: str) -> str | None:
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:
        assert isinstance(exc.orig, psycopg.Error)
        return exc.orig.sqlstate
    return None


@pytest.mark.asyncio
async def test_e4_app_role_can_append_but_never_rewrite_audit(
    postgres: PostgresServer, postgres_database: str, owner: sa.Engine, tmp_path: Path
) -> None:
    granted = grant_app_role(owner, APP_ROLE)
    assert "audit_log: SELECT, INSERT" in granted
    assert "plugin_config_history: SELECT, INSERT" in granted
    assert "core_setting_history: SELECT, INSERT" in granted
    assert "core_setting_overrides: SELECT, INSERT, UPDATE, DELETE" in granted
    assert "plugins: SELECT, INSERT, UPDATE, DELETE" in granted
    assert "vivified_schema_version: SELECT" in granted

    app = create_engine_for(postgres.url(postgres_database, app_role=True))
    try:
        key = tmp_path / "checkpoint.key"
        log = AuditLog(
            app,
            clock=SystemClock(),
            signer=CheckpointSigner.load_or_create(key),
            checkpoint_path=tmp_path / "checkpoints.jsonl",
        )
        await log.start()
        for n in range(3):
            await log.append(AuditRecord(actor="plugin:e4", action="e4.test", resource=str(n)))
        await log.close()
        with app.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == APP_ROLE
            assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one() == 3

        for statement in (
            "UPDATE audit_log SET decision = 'deny' WHERE seq = 2",
            "DELETE FROM audit_log WHERE seq = 3",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "DROP TABLE audit_log",
        ):
            state = _sqlstate(app, statement)
            assert state == INSUFFICIENT_PRIVILEGE, f"{statement}: {state}"
        # The state the core changes in place stays writable.
        assert _sqlstate(app, "UPDATE plugins SET status = 'disabled' WHERE plugin_id = 'none'") is None
        result = verify(app, tmp_path / "checkpoints.jsonl", key.with_name(key.name + ".pub"))
        assert (result.ok, result.count) == (True, 3), result.problem
    finally:
        app.dispose()


def test_e4_trigger_refuses_rewrites_even_to_the_owner(owner: sa.Engine) -> None:
    with owner.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_log (seq, time, actor, action, resource, decision, reason, rule_id, outcome,"
            " trace_id, detail, prev_hash, hash) VALUES (1, now(), 'a', 'b', '', 'allow', '', '', 'OK', '', NULL,"
            " repeat('0', 64), repeat('1', 64))"
        )
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="audit_log is append-only") as caught, owner.begin() as conn:
            conn.exec_driver_sql(statement)
        assert isinstance(caught.value.orig, psycopg.Error)
        assert caught.value.orig.sqlstate == INSUFFICIENT_PRIVILEGE
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT actor FROM audit_log")).scalars().all() == ["a"]


def test_grants_refuse_roles_that_would_bypass_them(owner: sa.Engine, postgres: PostgresServer) -> None:
    with pytest.raises(DatabaseError, match="does not exist; create it first"):
        grant_app_role(owner, "nobody_here")
    with pytest.raises(DatabaseError, match="is a superuser"):
        grant_app_role(owner, "vivified")
    with owner.begin() as conn:
        conn.exec_driver_sql("CREATE ROLE table_owner_role")
        conn.exec_driver_sql("CREATE TABLE owned_elsewhere (x integer)")
        conn.exec_driver_sql("ALTER TABLE owned_elsewhere OWNER TO table_owner_role")
    try:
        with pytest.raises(DatabaseError, match="owns owned_elsewhere"):
            grant_app_role(owner, "table_owner_role")
    finally:
        with owner.begin() as conn:
            conn.exec_driver_sql("DROP TABLE owned_elsewhere")
            conn.exec_driver_sql("DROP ROLE table_owner_role")


def test_core_role_without_grants_is_refused_with_the_fix(
    postgres: PostgresServer, postgres_database: str, owner: sa.Engine
) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        create_engine_for(postgres.url(postgres_database, app_role=True))
    message = str(caught.value)
    assert "permission denied for table vivified_schema_version" in message
    assert "`--app-role ROLE`" in message
    assert postgres.app_password not in message and f"{APP_ROLE}:***@" in message
