"""`query` (behind AuditQueryService) on SQLite and PostgreSQL: exact filters,
half-open time ranges across time zones, newest first, keyset pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditFilter, AuditLog, AuditRecord, CheckpointSigner, query
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for

pytestmark = pytest.mark.asyncio
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine_for(migrated_database_url)
    yield engine
    engine.dispose()


async def _written(engine: sa.Engine, signer: CheckpointSigner, checkpoint_path: Path) -> None:
    """Six records a minute apart: actors a/b alternate, every third is a deny."""
    clock = ManualClock(T0)
    log = AuditLog(engine, clock=clock, signer=signer, checkpoint_path=checkpoint_path)
    await log.start()
    for i in range(6):
        deny = i % 3 == 2
        await log.append(
            AuditRecord(
                actor="user:a" if i % 2 == 0 else "plugin:b",
                action=f"/x.v1.S/M{i}",
                decision="deny" if deny else "allow",
                reason="POLICY_DENIED" if deny else "",
                outcome="PERMISSION_DENIED" if deny else "OK",
            )
        )
        clock.advance(60)
    await log.close()


async def test_filters_time_range_and_pages(db: sa.Engine, signer: CheckpointSigner, checkpoint_path: Path) -> None:
    await _written(db, signer, checkpoint_path)
    everything = query(db, AuditFilter(), 100)
    assert [r.seq for r in everything] == [6, 5, 4, 3, 2, 1]
    assert [r.seq for r in query(db, AuditFilter(actor="user:a"), 100)] == [5, 3, 1]
    assert [r.seq for r in query(db, AuditFilter(decision="deny"), 100)] == [6, 3]
    assert [r.seq for r in query(db, AuditFilter(action="/x.v1.S/M4", actor="user:a"), 100)] == [5]
    # [12:01, 12:03) in UTC, given as 13:01 in UTC+1: the second and third records.
    plus_one = dt.timezone(dt.timedelta(hours=1))
    start = (T0 + dt.timedelta(minutes=1)).astimezone(plus_one)
    window = AuditFilter(start=start, end=T0 + dt.timedelta(minutes=3))
    assert [r.seq for r in query(db, window, 100)] == [3, 2]
    first = query(db, AuditFilter(), 2)
    second = query(db, AuditFilter(before_seq=first[-1].seq), 2)
    assert [r.seq for r in first + second] == [6, 5, 4, 3]
