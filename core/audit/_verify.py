"""Verification of the audit log against itself and against its checkpoints.

The table walk (streamed in seq order) finds edited, deleted and reordered
rows: each one breaks a recomputed hash, the seq contiguity or a prev_hash
link. What the walk cannot find — a cut-off tail, or a rewrite whose hashes
were all recomputed — the signed checkpoints outside the database reveal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from vivified.core.audit._checkpoint import load_public_key, read_checkpoints
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
            sa.select(audit_table)
            .where(audit_table.c.seq > after)
            .order_by(audit_table.c.seq)
            .limit(limit)
        ).mappings()
        return [StoredRecord.from_row(row) for row in rows]


def _rows(engine: sa.Engine) -> Iterator[StoredRecord]:
    # Keyset pages, each in its own short read: memory stays bounded and no
    # long-lived read transaction holds back the writer (or the WAL).
    last = 0
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


def _walk(engine: sa.Engine) -> VerifyResult:
    count, prev = 0, GENESIS_HASH
    try:
        for record in _rows(engine):
            expected = count + 1
            if record.seq != expected:
                problem = f"seq {expected} is missing (next row is seq {record.seq})"
                return VerifyResult(False, count, expected, problem)
            if record.compute_hash() != record.hash:
                problem = f"seq {expected}: hash does not match its content"
                return VerifyResult(False, count, expected, problem)
            if record.prev_hash != prev:
                problem = f"seq {expected}: prev_hash does not link to seq {count}"
                return VerifyResult(False, count, expected, problem)
            count, prev = expected, record.hash
    except _Unreadable as exc:
        return VerifyResult(False, count, count + 1, f"row after seq {count} is unreadable: {exc}")
    return VerifyResult(True, count, None, "")


def verify(engine: sa.Engine, checkpoint_path: Path, public_key_path: Path) -> VerifyResult:
    """Verify the chain in the table, then every checkpoint line against it.

    A missing checkpoint file is accepted only for an empty table: the log
    anchors its first commit at once, so records without any checkpoint mean
    the anchor was removed. Records appended after the last checkpoint are
    chain-checked but, by nature, not yet anchored.
    """
    public_key = load_public_key(public_key_path)
    # Only checkpoints already written when the walk starts are checked: each
    # was written after its records committed, so the walk sees them even
    # while the log keeps appending.
    try:
        limit: int | None = checkpoint_path.stat().st_size
    except FileNotFoundError:
        limit = None
    walked = _walk(engine)
    if not walked.ok:
        return walked
    count = walked.count
    if limit is None:
        if count == 0:
            return walked
        return VerifyResult(False, count, None, f"checkpoint file {checkpoint_path} is missing")
    with engine.connect() as conn:
        for line, checkpoint, problem in read_checkpoints(checkpoint_path, public_key, limit=limit):
            if checkpoint is None:
                return VerifyResult(False, count, None, f"checkpoint line {line}: {problem}")
            where = f"checkpoint line {line} (seq {checkpoint.seq})"
            if problem:
                return VerifyResult(False, count, checkpoint.seq, f"{where}: {problem}")
            if checkpoint.count > count:
                return VerifyResult(
                    False,
                    count,
                    count + 1,
                    f"{where}: log truncated: checkpoint counts {checkpoint.count} "
                    f"records, the table holds {count}",
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
    return walked


def tail(engine: sa.Engine, n: int) -> list[StoredRecord]:
    """The last `n` records, in seq order."""
    if n <= 0:
        return []
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.select(audit_table).order_by(audit_table.c.seq.desc()).limit(n))
            .mappings()
            .all()
        )
    return [StoredRecord.from_row(row) for row in reversed(rows)]
