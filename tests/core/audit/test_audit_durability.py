"""The audit log's durability modes in process, on a real SQLite file: what
each mode asks SQLite for, the group sync's flushes and bound, and fail
closed once a group sync fails."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditLog, AuditRecord, AuditSyncFailed, Durability, _durability, audit_table
from vivified.core.audit._durability import GroupSync
from vivified.core.clock import ManualClock

pytestmark = pytest.mark.asyncio


def _synchronous(log: AuditLog) -> int:
    """PRAGMA synchronous of the writer's own connection (1 NORMAL, 2 FULL)."""
    held = log._held  # noqa: SLF001 - the connection the writer commits on
    assert held is not None
    return int(held.exec_driver_sql("PRAGMA synchronous").scalar_one())


async def test_group_mode_commits_without_fsync_and_the_sync_thread_fsyncs_the_wal(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced: list[int] = []
    real_fsync = _durability.os.fsync
    wal_inode = threading.Event()

    def fsync(fd: int) -> None:
        synced.append(fd)
        if _durability.os.fstat(fd).st_ino == Path(f"{db_path}-wal").stat().st_ino:
            wal_inode.set()
        real_fsync(fd)

    monkeypatch.setattr(_durability.os, "fsync", fsync)
    log = make_log(durability=Durability("group", 0.01))
    await log.start()
    stored = [await log.append(sample(i)) for i in range(1, 6)]
    assert _synchronous(log) == 1  # NORMAL: the commit itself does not fsync
    assert await asyncio.to_thread(wal_inode.wait, 5), "the group sync never fsynced the WAL"
    await log.close()
    assert [r.seq for r in stored] == [1, 2, 3, 4, 5]


async def test_fsync_mode_commits_with_full_sync_and_has_no_sync_thread(
    make_log: Callable[..., AuditLog], sample: Callable[..., AuditRecord]
) -> None:
    log = make_log(durability=Durability("fsync"))
    await log.start()
    await log.append(sample(1))
    assert _synchronous(log) == 2  # FULL: every commit is fsynced before it answers
    assert not any(t.name == "audit-sync" for t in threading.enumerate() if t.is_alive())
    await log.close()


async def test_a_failed_group_sync_fails_every_later_append_closed(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = make_log(durability=Durability("group", 0.01))
    await log.start()
    await log.append(sample(1))
    await asyncio.to_thread(log._sync.barrier)  # type: ignore[union-attr]  # noqa: SLF001

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_durability.os, "fsync", broken)
    await log.append(sample(2))  # committed; the sync after it fails
    sync = log._sync  # noqa: SLF001
    assert sync is not None
    for _ in range(500):
        if sync.error is not None:
            break
        await asyncio.sleep(0.01)
    assert isinstance(sync.error, OSError)
    with pytest.raises(AuditSyncFailed, match="Input/output error"):
        await log.append(sample(3))
    with pytest.raises(AuditSyncFailed):
        await log.append(sample(4))
    await log.close()
    with engine.connect() as conn:
        seqs = conn.execute(sa.select(audit_table.c.seq).order_by(audit_table.c.seq)).scalars().all()
    assert seqs == [1, 2]  # nothing written after the failed sync


async def test_group_sync_holds_answers_while_behind_its_bound() -> None:
    clock = ManualClock()
    release = threading.Event()
    flushes: list[float] = []

    def slow_flush() -> None:
        release.wait(10)
        flushes.append(clock.monotonic())

    sync = GroupSync(slow_flush, 0.01, clock.monotonic)
    sync.start()
    sync.committed()
    sync.hold_within_bound()  # within the bound: returns at once
    clock.advance(0.02)  # the stalled flush is now past the bound
    held = threading.Thread(target=sync.hold_within_bound)
    held.start()
    held.join(0.2)
    assert held.is_alive(), "an answer left while the sync was past its bound"
    release.set()
    held.join(5)
    assert not held.is_alive() and len(flushes) == 1
    sync.stop()


async def test_durability_values_are_checked() -> None:
    with pytest.raises(ValueError, match="audit_durability must be one of group, fsync"):
        Durability("async")
    with pytest.raises(ValueError, match="audit_sync_interval must be between"):
        Durability("group", 2.0)
