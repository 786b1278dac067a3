"""The start-up check of the audit log's tail: from the last signed checkpoint
to the head of the table.

A log about to append verifies what it would chain onto, so that it never
signs a checkpoint over records it did not write and could not check:

- after a clean stop the last checkpoint is final and the table must end at
  it; a record after it was appended while no core ran (with `shared_chain`,
  several replicas append to one chain, so it may be another replica's and is
  walked like a crash tail instead);
- after a crash the last checkpoint is not final, and the records after it
  (the unanchored tail, at most one checkpoint interval) are walked: each
  must hash correctly and chain onto the one before.

The anchor itself must still be there with its signed hash. Anything else is
tampering: `AuditTailTampered` names the first bad sequence.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from vivified.core.audit._checkpoint import last_checkpoint
from vivified.core.audit._table import audit_table
from vivified.core.audit._verify import ChainAnchor, walk
from vivified.core.errors import FailedPrecondition

ACCEPT_FLAG = "--accept-audit-tampering"
"""The `vivified core` flag that starts a core on a tampered tail (given the first bad seq)."""


class AuditTailTampered(FailedPrecondition):
    """The audit log's tail fails its start-up check; the log must not extend it."""

    def __init__(self, first_bad_seq: int, problem: str) -> None:
        super().__init__(
            f"audit log tampered: first bad sequence {first_bad_seq}: {problem}. Nothing is appended to it; "
            f"to start anyway (recorded as the first audit record and raised as a SecurityAlert) pass "
            f"{ACCEPT_FLAG} {first_bad_seq}",
            reason="AUDIT_TAIL_TAMPERED",
            metadata={"first_bad_seq": str(first_bad_seq)},
        )
        self.first_bad_seq = first_bad_seq
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class TailCheck:
    """What the start-up check found.

    `first_bad_seq`/`problem` are set when the tail is tampered; `unanchored`
    is the (first, last) seq of a verified tail that no checkpoint of this
    log covered (after a crash, or another replica's records); `final` says
    whether the last checkpoint was a clean stop's (True for an empty log).
    """

    first_bad_seq: int | None
    problem: str
    unanchored: tuple[int, int] | None
    final: bool

    @property
    def tampered(self) -> bool:
        return self.first_bad_seq is not None


def _tampered(seq: int, problem: str) -> TailCheck:
    return TailCheck(seq, problem, None, False)


def check_tail(
    engine: sa.Engine,
    checkpoint_path: Path,
    public_key: ed25519.Ed25519PublicKey,
    *,
    shared_chain: bool = False,
) -> TailCheck:
    """Verify the chain from the last checkpoint in `checkpoint_path` to the head."""
    with engine.connect() as conn:
        head = conn.execute(sa.select(sa.func.max(audit_table.c.seq))).scalar_one_or_none() or 0
    last = last_checkpoint(checkpoint_path, public_key)
    if last is None:
        if head == 0:
            return TailCheck(None, "", None, True)
        if not shared_chain:
            return _tampered(1, f"the table holds records up to seq {head} but {checkpoint_path} has no checkpoint")
        anchor = ChainAnchor()
        final = False
    else:
        checkpoint, problem = last
        if checkpoint is None:
            return _tampered(1, f"last line of {checkpoint_path}: {problem}")
        if problem:
            return _tampered(checkpoint.seq, f"last checkpoint (seq {checkpoint.seq}): {problem}")
        if head < checkpoint.seq:
            return _tampered(
                head + 1, f"log truncated: the last checkpoint covers seq {checkpoint.seq}, the table ends at {head}"
            )
        with engine.connect() as conn:
            stored = conn.execute(
                sa.select(audit_table.c.hash).where(audit_table.c.seq == checkpoint.seq)
            ).scalar_one_or_none()
        if stored != checkpoint.hash:
            return _tampered(checkpoint.seq, f"seq {checkpoint.seq}: hash differs from the last signed checkpoint")
        final = bool(checkpoint.final)
        if final and not shared_chain and head > checkpoint.seq:
            return _tampered(
                checkpoint.seq + 1,
                f"records {checkpoint.seq + 1}..{head} were appended after the final checkpoint of the clean stop "
                f"at seq {checkpoint.seq}",
            )
        anchor = ChainAnchor(checkpoint.seq, checkpoint.hash)
    walked = walk(engine, anchor)
    if not walked.ok:
        return _tampered(walked.first_bad_seq or anchor.seq + 1, walked.problem)
    unanchored = (anchor.seq + 1, walked.count) if walked.count > anchor.seq else None
    return TailCheck(None, "", unanchored, final and unanchored is None)
