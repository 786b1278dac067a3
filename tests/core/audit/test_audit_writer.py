"""The group-commit writer: concurrency, failure, checkpoints, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditLog, AuditRecord, audit_table, tail, verify
from vivified.core.clock import ManualClock, SystemClock


@pytest.mark.asyncio
async def test_e2_concurrent_writers_single_chain(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    """50 concurrent writers x 1,000 appends each through one AuditLog on
    SQLite: one contiguous chain, no fork, every append answered with its own
    committed record."""
    writers, per_writer = 50, 1000
    batches: list[int] = []
    log = make_log(clock=SystemClock(), on_commit=lambda size, _seconds: batches.append(size))
    await log.start()

    async def writer(w: int) -> list[tuple[int, str, str]]:
        results = []
        for i in range(per_writer):
            stored = await log.append(sample(i, actor=f"plugin:w{w}"))
            results.append((stored.seq, stored.actor, stored.resource))
        return results

    started = time.monotonic()
    answered = [r for rs in await asyncio.gather(*(writer(w) for w in range(writers))) for r in rs]
    elapsed = time.monotonic() - started
    await log.close()

    total = writers * per_writer
    assert sorted(seq for seq, _, _ in answered) == list(range(1, total + 1))
    assert sum(batches) == total and max(batches) > 1  # group commit did group
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_table.c.seq, audit_table.c.actor, audit_table.c.resource)).all()
    # Each caller got back exactly the row stored under its seq.
    assert sorted(tuple(r) for r in rows) == sorted(answered)
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (True, total), result.problem
    assert elapsed < 60, f"{total} appends took {elapsed:.1f}s"


@pytest.mark.asyncio
async def test_db_failure_fails_the_append_and_keeps_the_chain(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    log = make_log()
    await log.start()
    try:
        for i in range(1, 4):
            last = await log.append(sample(i))
        # The database refuses every insert, as a full disk or a lost server would.
        with raw_engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        outcomes = await asyncio.gather(*(log.append(sample(i)) for i in range(10, 30)), return_exceptions=True)
        assert all(isinstance(o, sa.exc.DBAPIError) for o in outcomes), outcomes
        assert log.head == (3, last.hash)

        with raw_engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse")
        after = await log.append(sample(4))
    finally:
        await log.close()

    assert (after.seq, after.prev_hash) == (4, last.hash)
    assert [r.resource for r in tail(engine, 10)] == [f"message/{i}" for i in (1, 2, 3, 4)]
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (True, 4), result.problem


@pytest.mark.asyncio
async def test_failed_record_takes_down_only_its_batch(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    with raw_engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log WHEN NEW.actor = 'plugin:boom' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    log = make_log()
    await log.start()
    try:
        await log.append(sample(1))
        with pytest.raises(sa.exc.DBAPIError):
            await log.append(sample(2, actor="plugin:boom"))
        resumed = await log.append(sample(3))
    finally:
        await log.close()

    assert resumed.seq == 2
    assert [r.resource for r in tail(engine, 10)] == ["message/1", "message/3"]
    assert verify(engine, checkpoint_path, public_key_path).ok


@pytest.mark.asyncio
async def test_checkpoints_follow_the_clock_and_close(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    clock: ManualClock,
    checkpoint_path: Path,
) -> None:
    def anchored() -> list[tuple[int, int]]:
        lines = checkpoint_path.read_text().splitlines()
        return [(c["seq"], c["count"]) for c in map(json.loads, lines)]

    log = make_log(checkpoint_every=10.0)
    await log.start()
    await log.append(sample(1))
    assert anchored() == [(1, 1)]  # the first commit is anchored at once
    await log.append(sample(2))
    clock.advance(9.9)
    await log.append(sample(3))
    assert anchored() == [(1, 1)]  # not yet due
    clock.advance(0.1)
    await log.append(sample(4))
    assert anchored() == [(1, 1), (4, 4)]
    await log.append(sample(5))
    await log.close()
    assert anchored() == [(1, 1), (4, 4), (5, 5)]  # close anchors the head


@pytest.mark.asyncio
async def test_close_drains_every_queued_append(
    make_log: Callable[..., AuditLog], sample: Callable[..., AuditRecord], engine: sa.Engine
) -> None:
    log = make_log(max_batch=7)
    await log.start()
    pending = [asyncio.ensure_future(log.append(sample(i))) for i in range(100)]
    await asyncio.sleep(0)  # let every append enqueue
    await log.close()

    stored = await asyncio.gather(*pending)
    assert [s.seq for s in stored] == list(range(1, 101))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_table)).scalar() == 100
    with pytest.raises(RuntimeError):
        await log.append(sample(101))


@pytest.mark.asyncio
async def test_cancelled_caller_does_not_unrecord_its_event(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    log = make_log(on_commit=lambda _size, _seconds: 1 / 0)  # a broken metrics hook
    await log.start()
    caller = asyncio.ensure_future(log.append(sample(1)))
    await asyncio.sleep(0)  # enqueued
    caller.cancel()
    after = await log.append(sample(2))
    await log.close()

    assert caller.cancelled()
    assert after.seq == 2
    assert [r.resource for r in tail(engine, 5)] == ["message/1", "message/2"]
    assert verify(engine, checkpoint_path, public_key_path).ok
