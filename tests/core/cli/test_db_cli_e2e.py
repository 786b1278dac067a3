"""`vivified db upgrade` and a real core on PostgreSQL: migrations with
progress, least-privilege grants, refusals at start (schema behind, server
unreachable) that name the fix and never the password, and a plugin admitted
through a core whose audit chain lives in PostgreSQL and verifies intact."""

from __future__ import annotations

import os
import pathlib
import socket
import time
from collections.abc import Callable
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from support.clients import admitted_plugin
from support.postgres_server import APP_ROLE, PostgresServer
from support.processes import core_running, run_vivified
from vivified.core.cli import main
from vivified.core.db import load_migrations

pytestmark = pytest.mark.e2e

LATEST = load_migrations()[-1].version


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def vivified(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the `vivified` command line in this process (the same `main` the
    console script calls): returns (exit code, stdout, stderr)."""
    for name in [n for n in os.environ if n.startswith("VIVIFIED_")]:
        monkeypatch.delenv(name)

    def run(*args: str, **environ: str) -> Result:
        with monkeypatch.context() as patched:
            for name, value in environ.items():
                patched.setenv(name, value)
            code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def test_upgrade_reports_each_step_grants_the_app_role_and_is_idempotent(
    postgres: PostgresServer, postgres_database: str, vivified: Callable[..., Result]
) -> None:
    url = postgres.url(postgres_database)
    first = vivified("db", "upgrade", "--database-url", url, "--app-role", APP_ROLE)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == (
        f"database postgresql+psycopg://vivified@127.0.0.1:{postgres.port}/{postgres_database}: "
        f"schema version 0, this release needs {LATEST}"
    )
    assert lines[1 : 1 + LATEST] == [f"applying {m.label}" for m in load_migrations()]
    assert f"schema upgraded to version {LATEST} ({LATEST} migration(s) applied)" in lines
    assert f"granted {APP_ROLE} on audit_log: SELECT, INSERT" in lines

    again = vivified("db", "--database-url", url, "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"schema is current (version {LATEST}); nothing to apply" in again.stdout
    assert "applying" not in again.stdout


def test_upgrade_failure_is_clear_and_hides_the_password(
    postgres: PostgresServer, postgres_database: str, vivified: Callable[..., Result]
) -> None:
    # The app role may not create tables: migrations are the owner's job.
    as_app = postgres.url(postgres_database, app_role=True)
    refused = vivified("db", "--database-url", as_app, "upgrade")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: cannot use database postgresql+psycopg://{APP_ROLE}:***@127.0.0.1")
    assert "permission denied for schema public" in refused.stderr
    assert "the schema owner runs `vivified db upgrade`" in refused.stderr
    assert postgres.app_password not in refused.stdout + refused.stderr

    unreachable = f"postgresql+psycopg://{APP_ROLE}:{postgres.app_password}@127.0.0.1:{_free_port()}/none"
    down = vivified("db", "--database-url", unreachable, "upgrade")
    assert down.returncode == 1
    assert "error: cannot use database" in down.stderr and "Connection refused" in down.stderr
    assert postgres.app_password not in down.stdout + down.stderr
    assert "Traceback" not in down.stderr


def test_sqlite_upgrade_in_the_data_dir_and_no_roles_there(
    tmp_path: pathlib.Path, vivified: Callable[..., Result]
) -> None:
    data = tmp_path / "data"
    done = vivified("db", "upgrade", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert f"schema upgraded to version {LATEST}" in done.stdout
    assert (data / "vivified.db").exists()
    roles = vivified("db", "--data-dir", str(data), "upgrade", "--app-role", "someone")
    assert roles.returncode == 1
    assert "--app-role needs PostgreSQL" in roles.stderr
    unknown = vivified("db", "--data-dir", str(data), "upgrade", VIVIFIED_DATABSE_URL="x")
    assert unknown.returncode == 1 and "VIVIFIED_DATABSE_URL" in unknown.stderr


def test_k3_core_refuses_a_schema_behind_and_an_unreachable_server(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    behind = run_vivified(
        "core",
        "--data-dir",
        str(tmp_path / "a"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--database-url",
        postgres.url(postgres_database, app_role=True),
        timeout=30,
    )
    assert behind.returncode == 1
    assert f"is at schema version 0, this release needs {LATEST}" in behind.stderr
    assert "run `vivified db upgrade --database-url <url>`" in behind.stderr
    assert postgres.app_password not in behind.stdout + behind.stderr
    assert not (tmp_path / "a" / "vivified.db").exists()  # no fallback to SQLite

    unreachable = f"postgresql+psycopg://{APP_ROLE}:{postgres.app_password}@127.0.0.1:{_free_port()}/vivified"
    started = time.monotonic()
    down = run_vivified(
        "core",
        "--data-dir",
        str(tmp_path / "b"),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--database-url",
        unreachable,
        timeout=30,
    )
    assert time.monotonic() - started < 15
    assert down.returncode == 1
    assert "error: cannot use database postgresql+psycopg://vivified_app:***@127.0.0.1" in down.stderr
    assert postgres.app_password not in down.stdout + down.stderr
    assert not (tmp_path / "b" / "vivified.db").exists()
    assert not (tmp_path / "b" / "run" / "core.json").exists()


@pytest.mark.asyncio
async def test_core_on_postgresql_admits_a_plugin_and_its_audit_chain_verifies(
    postgres: PostgresServer, postgres_database: str, tmp_path: pathlib.Path
) -> None:
    migrated = run_vivified("db", "upgrade", "--database-url", postgres.url(postgres_database), "--app-role", APP_ROLE)
    assert migrated.returncode == 0, migrated.stderr
    # The core logs in as the least-privileged role, the production shape.
    as_app = postgres.url(postgres_database, app_role=True)
    data = tmp_path / "data"
    with core_running(data, "--database-url", as_app) as core:
        await admitted_plugin(core, "pg-plugin")
        log = core.log()
    assert postgres.app_password not in log
    assert not (data / "vivified.db").exists()

    verified = run_vivified("audit", "--data-dir", str(data), "--database-url", as_app, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit log OK: ")

    owner = sa.create_engine(postgres.url(postgres_database))
    try:
        with owner.connect() as conn:
            rows = conn.execute(sa.text("SELECT seq, actor, action, outcome FROM audit_log ORDER BY seq")).all()
    finally:
        owner.dispose()
    assert f"audit log OK: {len(rows)} records" in verified.stdout
    actions = [(r.actor, r.action, r.outcome) for r in rows]
    assert ("core:core", "core.start", "OK") in actions
    assert ("operator:admin", "/vivified.admin.v1.PluginAdminService/ApprovePlugin", "OK") in actions
    assert any(a[1] == "/vivified.registry.v1.PluginRegistryService/Register" and a[2] == "OK" for a in actions)
