"""Shared fixtures: a real core process per test module that needs one, and a
real PostgreSQL server per test session with a fresh database per test."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from support.postgres_server import PostgresServer, postgres_running
from support.processes import CoreProcess, core_running


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """A core with a short heartbeat interval, shared by one test module."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("core") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--leaf-ttl", "600") as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server for the whole session, stopped by pid at the end."""
    with postgres_running() as server:
        yield server


@pytest.fixture
def postgres_database(postgres: PostgresServer) -> Iterator[str]:
    """The name of a fresh, empty database on the session's server."""
    name = postgres.create_database()
    yield name
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """An empty database (no schema yet) on each backend, as the superuser/owner."""
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'vivified.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url(request.getfixturevalue("postgres_database"))


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """`database_url` upgraded to the current schema, as `vivified db upgrade` leaves it."""
    from vivified.core.db import plain_engine, upgrade

    engine = plain_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return database_url
