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
    AuditTailTampered,
    Checkpoint,
    CheckpointSigner,
    StoredRecord,
    TailCheck,
    audit_table,
    verify,
)
from vivified.core.ca import load_private_key
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
            conn.execute(sa.select(audit_table).where(audit_table.c.seq >= seq).order_by(audit_table.c.seq))
            .mappings()
            .all()
        )
    for row in rows:
        record = StoredRecord.from_row(row)
        fixed = StoredRecord(**{**record.as_row(), "prev_hash": prev, "hash": ""})  # type: ignore[arg-type]
        new_hash = fixed.compute_hash()
        _update(engine, record.seq, prev_hash=prev, hash=new_hash)
        prev = new_hash


def test_checkpoints_were_written_where_expected(written: list[StoredRecord], checkpoint_path: Path) -> None:
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
    forged = Checkpoint(seq=9, hash=written[8].hash, count=9, time="2030-01-01T00:00:00.000000Z", final=True)
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


def test_checkpoints_say_whether_they_are_final(written: list[StoredRecord], checkpoint_path: Path) -> None:
    assert [c["final"] for c in _checkpoints(checkpoint_path)] == [False, False, True]


def test_e1_record_after_final_checkpoint_is_tampering(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    forged = StoredRecord.chain(
        AuditRecord(actor="operator:admin", action="plugin.approve"),
        seq=N + 1,
        time=written[-1].time,
        prev_hash=written[-1].hash,
    )
    with raw_engine.begin() as conn:
        conn.execute(audit_table.insert().values(**forged.as_row()))

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.count, result.first_bad_seq) == (False, N, N + 1)
    assert "final checkpoint" in result.problem
    # Several replicas sharing the chain: another replica's record, not tampering.
    assert verify(engine, checkpoint_path, public_key_path, shared_chain=True).ok


def test_e1_start_refuses_a_record_after_the_final_checkpoint(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    make_log: Callable[..., AuditLog],
    checkpoint_path: Path,
) -> None:
    forged = StoredRecord.chain(
        AuditRecord(actor="operator:admin", action="plugin.approve"),
        seq=N + 1,
        time=written[-1].time,
        prev_hash=written[-1].hash,
    )
    with raw_engine.begin() as conn:
        conn.execute(audit_table.insert().values(**forged.as_row()))
    before = checkpoint_path.read_bytes()

    with pytest.raises(AuditTailTampered) as caught:
        asyncio.run(make_log().start())

    assert caught.value.first_bad_seq == N + 1 and caught.value.reason == "AUDIT_TAIL_TAMPERED"
    assert f"first bad sequence {N + 1}" in caught.value.message
    assert checkpoint_path.read_bytes() == before  # nothing signed over it


def test_clean_restart_verifies(
    written: list[StoredRecord],
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    async def again() -> TailCheck:
        log = make_log()
        check = await log.start()
        await log.append(sample(N + 1))
        await log.close()
        return check

    check = asyncio.run(again())

    assert (check.tampered, check.unanchored, check.final) == (False, None, True)
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (True, N + 1), result.problem


def test_forged_record_mid_chain_names_itself_not_its_successor(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    forged = StoredRecord.chain(
        AuditRecord(actor="plugin:innocent", action="x"), seq=8, time=written[7].time, prev_hash=written[6].hash
    )
    values = forged.as_row()
    del values["seq"]
    _update(raw_engine, 8, **values)

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq, result.count) == (False, 8, 7)
    assert "seq 8: forged" in result.problem


def test_record_slipped_in_mid_chain_names_itself(
    written: list[StoredRecord],
    raw_engine: sa.Engine,
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    # Everything from seq 8 moves up one (its hashes, covering seq, now wrong);
    # a forged record chained onto seq 7 takes seq 8.
    with raw_engine.begin() as conn:
        for seq in range(N, 7, -1):
            conn.execute(audit_table.update().where(audit_table.c.seq == seq).values(seq=seq + 1))
    forged = StoredRecord.chain(
        AuditRecord(actor="plugin:innocent", action="x"), seq=8, time=written[7].time, prev_hash=written[6].hash
    )
    with raw_engine.begin() as conn:
        conn.execute(audit_table.insert().values(**forged.as_row()))

    result = verify(engine, checkpoint_path, public_key_path)

    assert (result.ok, result.first_bad_seq) == (False, 8)
    assert "chains past it onto seq 7" in result.problem


def test_checkpoints_without_the_final_flag_still_verify_and_count_as_not_final(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    key_path: Path,
    signer: CheckpointSigner,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    async def write(n: int) -> list[StoredRecord]:
        log = make_log()
        await log.start()
        records = [await log.append(sample(i)) for i in range(1, n + 1)]
        await log.close()
        return records

    records = asyncio.run(write(3))
    # The file as a core before the flag wrote it: the same lines, signed without `final`.
    private = load_private_key(key_path)
    lines = []
    for c in _checkpoints(checkpoint_path):
        old = Checkpoint(seq=c["seq"], hash=c["hash"], count=c["count"], time=c["time"])  # type: ignore[arg-type]
        lines.append(old.line(private.sign(old.payload())))  # type: ignore[union-attr]
    checkpoint_path.write_text("".join(line + "\n" for line in lines))
    assert all("final" not in json.loads(line) for line in lines)
    assert verify(engine, checkpoint_path, public_key_path).ok

    # A record after the last (legacy) one is an unanchored tail, as after a crash.
    extra = StoredRecord.chain(sample(4), seq=4, time=records[-1].time, prev_hash=records[-1].hash)
    with engine.begin() as conn:
        conn.execute(audit_table.insert().values(**extra.as_row()))

    async def restart() -> TailCheck:
        log = make_log()
        check = await log.start()
        await log.close()
        return check

    check = asyncio.run(restart())
    assert (check.tampered, check.unanchored) == (False, (4, 4))
    assert verify(engine, checkpoint_path, public_key_path).ok
