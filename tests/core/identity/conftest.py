"""The identity stores' tests run on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from vivified.core.db import create_engine_for


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    """A core engine on a migrated SQLite or PostgreSQL database, disposed after the test."""
    engine = create_engine_for(migrated_database_url)
    yield engine
    engine.dispose()
