"""The chain itself: hashes, linkage, durability of append, restart, tail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    StoredRecord,
    audit_table,
    tail,
    verify,
)
from vivified.core.clock import ManualClock


@pytest.mark.asyncio
async def test_verify_passes_on_clean_log(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    log = make_log()
    await log.start()
    for i in range(1, 26):
        await log.append(sample(i))
    await log.close()

    result = verify(engine, checkpoint_path, public_key_path)

    assert result.ok, result.problem
    assert (result.count, result.first_bad_seq, result.problem) == (25, None, "")


@pytest.mark.asyncio
async def test_hash_is_sha256_of_canonical_json_and_links_to_previous(
    make_log: Callable[..., AuditLog], clock: ManualClock
) -> None:
    log = make_log()
    await log.start()
    first = await log.append(
        AuditRecord(
            actor="operator:admin",
            action="plugin.approve",
            resource="plugin/email",
            detail={"traits": "handles_pii", "manifest": "abc"},
        )
    )
    clock.advance(1.5)
    second = await log.append(
        AuditRecord(
            actor="anonymous:127.0.0.1",
            action="x",
            decision="deny",
            reason="IDENTITY_MISSING",
            outcome="UNAUTHENTICATED",
        )
    )
    await log.close()

    # Recomputed independently of the module, from the documented format.
    expected = {
        "seq": 1,
        "time": "2030-01-01T00:00:00.000000Z",
        "actor": "operator:admin",
        "action": "plugin.approve",
        "resource": "plugin/email",
        "decision": "allow",
        "reason": "",
        "rule_id": "",
        "outcome": "OK",
        "trace_id": "",
        "detail": '{"manifest":"abc","traits":"handles_pii"}',
        "prev_hash": "0" * 64,
    }
    blob = json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    assert first.hash == hashlib.sha256(blob).hexdigest()
    assert first.prev_hash == GENESIS_HASH
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert second.time == dt.datetime(2030, 1, 1, 0, 0, 1, 500000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2031, 6, 7, 8, 9, 10, 11, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ],
)
def test_the_writers_hash_matches_json_dumps_for_any_text(when: dt.datetime) -> None:
    # The writer builds the canonical text directly (without the generic
    # encoder); it must hash exactly what json.dumps with sorted keys gives,
    # escapes and non-ASCII included, for a record with and without detail.
    for detail in ({"k": 'qu"ote\\ é \u2028 \x01'}, None):
        record = AuditRecord(
            actor='plugin:"é"\n', action="/a.B/C", resource="ü/\t", rule_id="r-1", trace_id="ab" * 16, detail=detail
        )
        stored = StoredRecord.chain(record, seq=41, time=when, prev_hash="f" * 64)
        fields = {
            "seq": 41,
            "time": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": record.actor,
            "action": record.action,
            "resource": record.resource,
            "decision": "allow",
            "reason": "",
            "rule_id": "r-1",
            "outcome": "OK",
            "trace_id": "ab" * 16,
            "detail": None if detail is None else json.dumps(detail, sort_keys=True, separators=(",", ":")),
            "prev_hash": "f" * 64,
        }
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        assert stored.hash == hashlib.sha256(blob).hexdigest()
        assert stored.compute_hash() == stored.hash  # what verify recomputes


@pytest.mark.asyncio
async def test_append_resolves_only_after_commit(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    raw_engine: sa.Engine,
) -> None:
    log = make_log()
    await log.start()
    try:
        for i in range(1, 4):
            stored = await log.append(sample(i))
            # A separate engine (own connection, own pool) sees the row the
            # moment append returns: it was committed, not merely queued.
            with raw_engine.connect() as conn:
                row = conn.execute(sa.select(audit_table).where(audit_table.c.seq == stored.seq)).mappings().one()
            assert StoredRecord.from_row(row) == stored
    finally:
        await log.close()


@pytest.mark.asyncio
async def test_restart_continues_the_same_chain(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key_path: Path,
) -> None:
    first_run = make_log()
    await first_run.start()
    for i in range(1, 6):
        last = await first_run.append(sample(i))
    await first_run.close()

    second_run = make_log()
    await second_run.start()
    assert second_run.head == (5, last.hash)
    resumed = await second_run.append(sample(6))
    await second_run.close()

    assert (resumed.seq, resumed.prev_hash) == (6, last.hash)
    result = verify(engine, checkpoint_path, public_key_path)
    assert (result.ok, result.count) == (True, 6), result.problem


@pytest.mark.asyncio
async def test_tail_returns_last_n_in_seq_order(
    make_log: Callable[..., AuditLog], sample: Callable[..., AuditRecord], engine: sa.Engine
) -> None:
    log = make_log()
    await log.start()
    written = [await log.append(sample(i)) for i in range(1, 11)]
    await log.close()

    assert tail(engine, 3) == written[-3:]
    assert tail(engine, 50) == written
    assert tail(engine, 0) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"decision": "maybe"},
        {"reason": "policy denied"},
        {"outcome": "ok"},
        {"actor": ""},
        {"detail": {"body": "x" * 5000}},
        {"detail": {"n": 1}},
    ],
)
def test_malformed_record_is_refused(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"actor": "plugin:email", "action": "a"}
    values.update(fields)
    with pytest.raises(ValueError):
        AuditRecord(**values)  # type: ignore[arg-type]


def test_detail_is_copied_so_later_mutation_changes_nothing() -> None:
    detail = {"n": "1"}
    record = AuditRecord(actor="plugin:email", action="a", detail=detail)
    detail["n"] = "2"
    assert record.detail_text() == '{"n":"1"}'


@pytest.mark.asyncio
async def test_append_before_start_is_refused(
    make_log: Callable[..., AuditLog], sample: Callable[..., AuditRecord]
) -> None:
    log = make_log()
    with pytest.raises(RuntimeError):
        await log.append(sample(1))
