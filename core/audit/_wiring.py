"""Assembles the audit log for the core (its query service is built where the chain's recorder is)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import sqlalchemy as sa

from vivified.core.audit._checkpoint import CheckpointSigner
from vivified.core.audit._durability import Durability
from vivified.core.audit._log import AuditLog
from vivified.core.audit._tail import TailCheck
from vivified.core.clock import Clock


class Audit:
    """The audit log of one core.
    As a component, `start` checks the tail (refusing a tampered one unless
    `accept_tampering` names its first bad seq; the result is `check`) and
    `stop` drains the log and writes the final checkpoint."""

    def __init__(self, log: AuditLog, accept_tampering: int | None) -> None:
        self.log = log
        self._accept_tampering = accept_tampering
        self.check: TailCheck | None = None

    async def start(self) -> None:
        self.check = await self.log.start(accept_tampering=self._accept_tampering)

    async def stop(self) -> None:
        await self.log.close()


def build_audit(
    *,
    engine: sa.Engine,
    clock: Clock,
    audit_dir: pathlib.Path,
    checkpoint_every: float,
    shared_chain: bool,
    durability: Durability,
    on_commit: Callable[[int, float], None],
    on_failure: Callable[[BaseException], None],
    accept_tampering: int | None,
) -> Audit:
    """Loads (or creates, 0600) the checkpoint key in `audit_dir`, refusing
    an exposed one; the log is not started."""
    return Audit(
        log=AuditLog(
            engine,
            clock=clock,
            signer=CheckpointSigner.load_or_create(audit_dir / "checkpoint.key"),
            checkpoint_path=audit_dir / "checkpoints.jsonl",
            checkpoint_every=checkpoint_every,
            on_commit=on_commit,
            shared_chain=shared_chain,
            durability=durability,
            on_failure=on_failure,
        ),
        accept_tampering=accept_tampering,
    )
