"""Tampering with the table or the checkpoints is detected and located.

The attacker here has full write access to the database file, and knows the
hash format, but not the checkpoint private key.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from vivified.core.audit import (
    AuditLog,
    AuditRecord,
    Checkpoint,
    StoredRecord,
    audit_table,
    verify,
)
from vivified.core.clock import ManualClock

N = 12


@pytest.fixture
def written(
    make_log: Callable[..., AuditLog], sample: Callable[..., AuditRecord], clock: ManualClock
) -> list[StoredRecord]:
    """N records; checkpoints at seq 1 (first commit), 6 (periodic) and N (close)."""

    async def write() -> list[StoredRecord]:
        log = make_log(checkpoint_every=10.0)
        await log.start()
        records = []
        for i in range(1, N + 1):
            if i == 6:
                clock.advance(10.0)
            records.append(await log.append(sample(i)))
        await log.close()
        return records

    return asyncio.run(write())


def _checkpoints(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _update(engine: sa.Engine, seq: int, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(audit_table.update().where(audit_table.c.seq == seq).values(**values))


def _row(engine: sa.Engine, seq: int) -> StoredRecord:
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_table).where(audit_table.c.seq == seq)).mappings().one()
    return StoredRecord.from_row(row)


def _rechain_from(engine: sa.Engine, seq: int) -> None:
    """What a knowledgeable attacker does after editing a row: recompute every
    prev_hash and hash from there on, so the table is self-consistent again."""
    prev = _row(engine, seq - 1).hash if seq > 1 else "0" * 64
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(audit_table).where(audit_table.c.seq >= seq).order_by(audit_table.c.seq)
            )
            .mappings()
            .all()
        )
    for row in rows:
        record = StoredRecord.from_row(row)
        fixed = StoredRecord(**{**record.as_row(), "prev_hash": prev, "hash": ""})  # type: ignore[arg-type]
        new_hash = fixed.compute_hash()
        _update(engine, record.seq, prev_hash=prev, hash=new_hash)
        prev = new_hash


def test_checkpoints_were_written_where_expected(
    written: list[StoredRecord], checkpoint_path: Path
) -> None:
    lines = _checkpoints(checkpoint_path)
    assert [(c["seq"], c["count"]) for c in lines] == [(1, 1), (6, 6), (N, N)]
    assert lines[-1]["hash"] == written[-1].hash


def test_edited_row_names_its_seq(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    _update(raw_engine, 7, actor="plugin:someone-else")

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq, result.count) == (False, 7, 6)
    assert "seq 7" in result.problem and "hash" in result.problem


def test_deleted_row_names_the_start_of_the_gap(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    with raw_engine.begin() as conn:
        conn.execute(audit_table.delete().where(audit_table.c.seq.in_([4, 5])))

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "seq 4 is missing" in result.problem


def test_swapped_rows_name_the_first_of_them(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    third, eighth = _row(raw_engine, 3).as_row(), _row(raw_engine, 8).as_row()
    del third["seq"], eighth["seq"]
    _update(raw_engine, 3, **eighth)
    _update(raw_engine, 8, **third)

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_e1_tail_truncation_detected_by_checkpoint(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    with raw_engine.begin() as conn:
        conn.execute(audit_table.delete().where(audit_table.c.seq > 9))

    result = verify(engine, checkpoint_path, public_key_path)

    # The remaining chain is perfectly consistent; only the signed count shows
    # that records 10..N existed.
    assert (result.ok, result.count, result.first_bad_seq) == (False, 9, 10)
    assert "truncated" in result.problem


def test_e1_full_rechain_detected_by_checkpoint(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    _update(raw_engine, 8, actor="plugin:innocent", decision="allow", outcome="OK")
    _rechain_from(raw_engine, 8)

    result = verify(engine, checkpoint_path, public_key_path)

    # Checkpoints at 1 and 6 still match; the one at N does not.
    assert (result.ok, result.first_bad_seq) == (False, N)
    assert f"seq {N}" in result.problem and "rewritten" in result.problem


def test_rechain_from_the_start_fails_at_the_first_checkpoint(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    _update(raw_engine, 1, actor="operator:nobody")
    _rechain_from(raw_engine, 1)

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_forged_checkpoint_signature_detected(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    # Truncate, then replace the anchors with ones signed by the attacker's key.
    with raw_engine.begin() as conn:
        conn.execute(audit_table.delete().where(audit_table.c.seq > 9))
    attacker = ed25519.Ed25519PrivateKey.generate()
    forged = Checkpoint(seq=9, hash=written[8].hash, count=9, time="2030-01-01T00:00:00.000000Z")
    line = {
        **forged.__dict__,
        "signature": base64.b64encode(attacker.sign(forged.payload())).decode(),
    }
    checkpoint_path.write_text(json.dumps(line) + "\n")

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 9)
    assert "signature" in result.problem


def test_edited_checkpoint_count_breaks_its_signature(
    written: list[StoredRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    lines = _checkpoints(checkpoint_path)
    lines[1]["count"] = 5
    checkpoint_path.write_text("".join(json.dumps(c) + "\n" for c in lines))

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "line 2" in result.problem and "signature" in result.problem


def test_malformed_checkpoint_line_is_reported(
    written: list[StoredRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    with checkpoint_path.open("a") as f:
        f.write('{"seq": "x"}\n')

    result = verify(engine, checkpoint_path, public_key_path)

    assert not result.ok and "line 4" in result.problem and "malformed" in result.problem


def test_removed_checkpoint_file_is_reported(
    written: list[StoredRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    checkpoint_path.unlink()

    result = verify(engine, checkpoint_path, public_key_path)

    assert not result.ok and "missing" in result.problem


def test_undecodable_row_is_reported_not_crashed_on(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    with raw_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET time = 'yesterday' WHERE seq = 5")

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.count, result.first_bad_seq) == (False, 4, 5)
    assert "unreadable" in result.problem
