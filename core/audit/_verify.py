"""Verification of the audit log against itself and against its checkpoints.

The table walk (streamed in seq order) finds edited, deleted and reordered
rows: each one breaks a recomputed hash, the seq contiguity or a prev_hash
link. What the walk cannot find — a cut-off tail, or a rewrite whose hashes
were all recomputed — the signed checkpoints outside the database reveal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from vivified.core.audit._checkpoint import Checkpoint, load_public_key, read_checkpoints
from vivified.core.audit._record import GENESIS_HASH, StoredRecord
from vivified.core.audit._table import audit_table

_PAGE = 1000


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """Outcome of `verify`.

    `count` is the number of records whose chain was verified intact;
    `first_bad_seq` names the first record found missing or wrong (None when
    the log is intact, or when the problem is a checkpoint line that cannot be
    read at all); `problem` says what was found, empty when `ok`.
    """

    ok: bool
    count: int
    first_bad_seq: int | None
    problem: str


class _Unreadable(Exception):
    """A row whose columns cannot even be decoded (e.g. text in a datetime)."""


def _fetch(engine: sa.Engine, after: int, limit: int) -> list[StoredRecord]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_table).where(audit_table.c.seq > after).order_by(audit_table.c.seq).limit(limit)
        ).mappings()
        return [StoredRecord.from_row(row) for row in rows]


def _rows(engine: sa.Engine, after: int = 0) -> Iterator[StoredRecord]:
    # Keyset pages, each in its own short read: memory stays bounded and no
    # long-lived read transaction holds back the writer (or the WAL).
    last = after
    while True:
        try:
            page = _fetch(engine, last, _PAGE)
        except (ValueError, TypeError):
            # Some row of this page is undecodable: go one row at a time to
            # find out which position it holds.
            try:
                page = _fetch(engine, last, 1)
            except (ValueError, TypeError) as exc:
                raise _Unreadable(str(exc)) from exc
        if not page:
            return
        yield from page
        last = page[-1].seq


@dataclasses.dataclass(frozen=True)
class ChainAnchor:
    """Where a walk starts: the record at `seq` with `hash` is taken as given."""

    seq: int = 0
    hash: str = GENESIS_HASH


def walk(
    engine: sa.Engine, anchor: ChainAnchor | None = None, vouched: Mapping[int, str] | None = None
) -> VerifyResult:
    """Walk the chain after `anchor` (default: from the genesis) to the head.

    `count` of the result is the last intact seq. A broken link names the
    first record that is wrong: when the record after `p` does not chain onto
    `p` but is itself intact (or chains onto the record before `p`), `p` was
    forged or slipped in, unless a signed checkpoint in `vouched` (seq -> hash)
    or the anchor vouches for `p`.
    """
    start = anchor or ChainAnchor()
    vouched = vouched or {}
    count, prev, before_prev = start.seq, start.hash, None
    trusted = {start.seq} if start.seq else set()
    try:
        for record in _rows(engine, start.seq):
            expected = count + 1
            if record.seq != expected:
                problem = f"seq {expected} is missing (next row is seq {record.seq})"
                return VerifyResult(False, count, expected, problem)
            intact = record.compute_hash() == record.hash
            if record.prev_hash == prev:
                if not intact:
                    problem = f"seq {expected}: hash does not match its content"
                    return VerifyResult(False, count, expected, problem)
                before_prev, count, prev = prev, expected, record.hash
                continue
            skips = before_prev is not None and record.prev_hash == before_prev
            if (intact or skips) and count not in trusted and vouched.get(count) != prev:
                problem = (
                    f"seq {count}: forged or inserted: seq {expected} "
                    f"{'chains past it onto seq ' + str(count - 1) if skips else 'was not chained onto it'}"
                )
                return VerifyResult(False, count - 1, count, problem)
            what = (
                "prev_hash does not link" if intact else "hash does not match its content and prev_hash does not link"
            )
            return VerifyResult(False, count, expected, f"seq {expected}: {what} to seq {count}")
    except _Unreadable as exc:
        return VerifyResult(False, count, count + 1, f"row after seq {count} is unreadable: {exc}")
    return VerifyResult(True, count, None, "")


def _signed_hashes(path: Path, public_key: ed25519.Ed25519PublicKey, limit: int) -> dict[int, str]:
    return {
        checkpoint.seq: checkpoint.hash
        for _, checkpoint, problem in read_checkpoints(path, public_key, limit=limit)
        if checkpoint is not None and not problem
    }


def verify(
    engine: sa.Engine, checkpoint_path: Path, public_key_path: Path, *, shared_chain: bool = False
) -> VerifyResult:
    """Verify the chain in the table, then every checkpoint line against it.

    A missing checkpoint file is accepted only for an empty table: the log
    anchors its first commit at once, so records without any checkpoint mean
    the anchor was removed. Records appended after the last checkpoint are
    chain-checked but, by nature, not yet anchored — unless that checkpoint is
    final (a clean stop): then nothing may follow it but the next start's
    anchor at the same seq, and records after it are reported as tampering.
    With `shared_chain` (several core replicas append to one chain, each
    anchoring it in its own file) records after this file's final checkpoint
    may be another replica's, so that rule is not applied.
    """
    public_key = load_public_key(public_key_path)
    # Only checkpoints already written when the walk starts are checked: each
    # was written after its records committed, so the walk sees them even
    # while the log keeps appending.
    try:
        limit: int | None = checkpoint_path.stat().st_size
    except FileNotFoundError:
        limit = None
    vouched = _signed_hashes(checkpoint_path, public_key, limit) if limit is not None else {}
    walked = walk(engine, vouched=vouched)
    count = walked.count
    if limit is None:
        if not walked.ok or count == 0:
            return walked
        return VerifyResult(False, count, None, f"checkpoint file {checkpoint_path} is missing")
    after_final: VerifyResult | None = None
    final: tuple[int, Checkpoint] | None = None
    with engine.connect() as conn:
        for line, checkpoint, problem in read_checkpoints(checkpoint_path, public_key, limit=limit):
            if final is not None and checkpoint is not None and checkpoint.seq != final[1].seq:
                after_final = after_final or _after_final(count, *final)
            final = None
            if checkpoint is None:
                return (
                    walked if not walked.ok else VerifyResult(False, count, None, f"checkpoint line {line}: {problem}")
                )
            where = f"checkpoint line {line} (seq {checkpoint.seq})"
            if problem:
                return _earliest(walked, VerifyResult(False, count, checkpoint.seq, f"{where}: {problem}"))
            if checkpoint.final and not shared_chain:
                final = (line, checkpoint)
            if not walked.ok:
                continue
            if checkpoint.count > count:
                return VerifyResult(
                    False,
                    count,
                    count + 1,
                    f"{where}: log truncated: checkpoint counts {checkpoint.count} records, the table holds {count}",
                )
            stored = conn.execute(
                sa.select(audit_table.c.hash).where(audit_table.c.seq == checkpoint.seq)
            ).scalar_one_or_none()
            if stored != checkpoint.hash:
                return VerifyResult(
                    False,
                    count,
                    checkpoint.seq,
                    f"{where}: hash differs from the signed checkpoint (log rewritten)",
                )
    if final is not None and (not walked.ok or count > final[1].count):
        after_final = after_final or _after_final(count, *final)
    if after_final is not None:
        return _earliest(walked, after_final)
    return walked


def _after_final(count: int, line: int, checkpoint: Checkpoint) -> VerifyResult:
    return VerifyResult(
        False,
        min(count, checkpoint.seq),
        checkpoint.seq + 1,
        f"seq {checkpoint.seq + 1}: recorded after the final checkpoint of a clean stop "
        f"(checkpoint line {line}, seq {checkpoint.seq}): appended while no core was running",
    )


def _earliest(walked: VerifyResult, other: VerifyResult) -> VerifyResult:
    """The problem that names the lower seq (the walk's, on a tie)."""
    if walked.ok or walked.first_bad_seq is None:
        return other
    if other.first_bad_seq is not None and other.first_bad_seq < walked.first_bad_seq:
        return other
    return walked


def tail(engine: sa.Engine, n: int) -> list[StoredRecord]:
    """The last `n` records, in seq order."""
    if n <= 0:
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq.desc()).limit(n)).mappings().all()
    return [StoredRecord.from_row(row) for row in reversed(rows)]
