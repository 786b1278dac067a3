"""The audit log on SQLite and PostgreSQL: append, verify, tamper detection,
and two writers (two core replicas) sharing one chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner, audit_table, verify
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for

pytestmark = pytest.mark.asyncio


@pytest.fixture
def shared_engines(migrated_database_url: str) -> Iterator[list[sa.Engine]]:
    made = [create_engine_for(migrated_database_url), create_engine_for(migrated_database_url)]
    yield made
    for made_engine in made:
        made_engine.dispose()


def _rewrite(engine: sa.Engine, statement: sa.Executable) -> None:
    """Tamper as the database owner would have to: on PostgreSQL the
    append-only trigger must be switched off first."""
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute(statement)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


async def test_append_verify_and_tamper_detection(
    shared_engines: list[sa.Engine],
    signer: CheckpointSigner,
    checkpoint_path: Path,
    public_key_path: Path,
    sample: Callable[..., AuditRecord],
) -> None:
    engine = shared_engines[0]
    log = AuditLog(engine, clock=SystemClock(), signer=signer, checkpoint_path=checkpoint_path)
    await log.start()
    stored = [await log.append(sample(i)) for i in range(1, 9)]
    await log.close()
    assert [r.seq for r in stored] == list(range(1, 9))
    assert stored[0].prev_hash == "0" * 64 and stored[1].prev_hash == stored[0].hash
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (True, 8), result.problem

    # A deny turned into an allow after the fact.
    assert stored[5].decision == "deny"
    _rewrite(engine, audit_table.update().where(audit_table.c.seq == 6).values(decision="allow", outcome="OK"))
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "hash does not match" in result.problem

    result = verify(engine, checkpoint_path, public_key_path)
    _rewrite(engine, audit_table.delete().where(audit_table.c.seq >= 6))
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (False, 5)
    assert "log truncated" in result.problem


async def test_two_writers_on_one_database_make_one_chain(
    shared_engines: list[sa.Engine],
    signer: CheckpointSigner,
    tmp_path: Path,
    public_key_path: Path,
    sample: Callable[..., AuditRecord],
) -> None:
    logs = [
        AuditLog(
            engine,
            clock=SystemClock(),
            signer=signer,
            checkpoint_path=tmp_path / f"replica{n}.jsonl",
            shared_chain=True,
        )
        for n, engine in enumerate(shared_engines)
    ]
    for log in logs:
        await log.start()

    async def writer(log: AuditLog, w: int) -> list[int]:
        return [(await log.append(sample(i, actor=f"plugin:w{w}"))).seq for i in range(40)]

    answered = await asyncio.gather(*(writer(logs[w % 2], w) for w in range(8)))
    for log in logs:
        await log.close()
    seqs = sorted(seq for per_writer in answered for seq in per_writer)
    assert seqs == list(range(1, 321))
    with shared_engines[0].connect() as conn:
        actors = conn.execute(sa.select(audit_table.c.actor).order_by(audit_table.c.seq)).scalars().all()
    assert len(actors) == 320 and len(set(actors)) == 8
    for n in range(2):
        # Each replica's signed checkpoints anchor the one shared chain; the
        # other replica's records after one's final checkpoint are expected.
        result = verify(shared_engines[0], tmp_path / f"replica{n}.jsonl", public_key_path, shared_chain=True)
        assert (result.ok, result.count) == (True, 320), result.problem
