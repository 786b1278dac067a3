"""When an audit record counts as written: the `audit_durability` setting.

- `group` (default): the batch is committed to the database (SQLite: its WAL
  file, written to the OS page cache with `synchronous=NORMAL`; PostgreSQL: a
  commit with `synchronous_commit=off`, in the server's WAL buffers) before
  the callers' answers leave, and a group sync thread makes it durable
  (SQLite: `fsync` of the WAL; PostgreSQL: a flushing commit) within
  `sync_interval`. A kill -9 of the core loses nothing acknowledged; a power
  loss (or a PostgreSQL server crash) at most the records of the last interval.
  The writer holds acknowledgements back whenever the sync thread falls
  behind that bound.
- `fsync`: every answer waits for the commit's own fsync (SQLite
  `synchronous=FULL`, PostgreSQL's `synchronous_commit` as configured),
  still one commit per batch of concurrent callers.

Both modes stay ordered, hash-chained and fail closed: a record that cannot
be written fails its call, and once a sync fails every later append fails.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

DURABILITY_MODES = ("group", "fsync")
MIN_SYNC_INTERVAL = 0.001
MAX_SYNC_INTERVAL = 1.0

PROMISES = {
    "group": "each answer leaves after its audit record is committed and handed to the OS (it survives a kill -9 "
    "of the core); an fsync follows within audit_sync_interval, so a power loss loses at most that window",
    "fsync": "each answer leaves only after the fsync covering its audit record (survives a power loss); "
    "concurrent calls share one commit and one fsync",
}
"""What each mode promises, in one sentence (shown by `vivified config show`)."""


@dataclasses.dataclass(frozen=True)
class Durability:
    """`mode` is `group` or `fsync`; `sync_interval` bounds group mode's window (seconds)."""

    mode: str = "group"
    sync_interval: float = 0.010

    def __post_init__(self) -> None:
        if self.mode not in DURABILITY_MODES:
            raise ValueError(f"audit_durability must be one of {', '.join(DURABILITY_MODES)}, not {self.mode!r}")
        if not MIN_SYNC_INTERVAL <= self.sync_interval <= MAX_SYNC_INTERVAL:
            raise ValueError(f"audit_sync_interval must be between {MIN_SYNC_INTERVAL} and {MAX_SYNC_INTERVAL} seconds")


class AuditSyncFailed(Exception):
    """The group sync could not make committed records durable; the audit log
    refuses every later append (fail closed) until the core restarts."""


class GroupSync:
    """The group sync thread: `flush` makes every commit before it durable.

    The writer calls `committed()` after each commit and `hold_within_bound()`
    before answering, which waits while the oldest unsynced commit is older
    than `interval`. The thread flushes as soon as a commit is unsynced; one
    flush covers every commit made before it started. (A short wait before
    each flush, so more commits share it, was tried: it did not clearly save
    CPU here, and it widens the window, so a slow fsync holds answers sooner.)
    """

    def __init__(self, flush: Callable[[], None], interval: float, monotonic: Callable[[], float]) -> None:
        self._flush = flush
        self._interval = interval
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._committed = 0
        self._synced = 0
        self._times: deque[float] = deque()  # commit times of unsynced commits, oldest first
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="audit-sync", daemon=True)

    @property
    def error(self) -> BaseException | None:
        return self._error

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        with self._cond:
            idle = self._committed == self._synced
            self._committed += 1
            self._times.append(self._monotonic())
            if idle:
                # Only a commit after an idle spell wakes the thread; while a
                # flush runs it re-checks for commits before it waits again.
                self._cond.notify_all()

    def hold_within_bound(self) -> None:
        """Block while the oldest unsynced commit is older than the interval;
        raise AuditSyncFailed once a flush failed."""
        with self._cond:
            while self._error is None and self._times and self._monotonic() - self._times[0] > self._interval:
                self._cond.notify_all()
                self._cond.wait(self._interval)
            if self._error is not None:
                raise AuditSyncFailed(str(self._error)) from self._error

    def flush_once(self) -> None:
        """Flush on the caller's thread; only before `start`."""
        self._flush()

    def barrier(self) -> None:
        """Flush now and wait until every commit so far is durable."""
        with self._cond:
            target = self._committed
            self._cond.notify_all()
            while self._error is None and self._synced < target:
                self._cond.wait(self._interval)
            if self._error is not None:
                raise AuditSyncFailed(str(self._error)) from self._error

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._committed == self._synced and not self._stopping:
                    self._cond.wait()
                if self._committed == self._synced:
                    return
                # No deliberate delay: the commits made while one flush runs
                # form the group the next flush covers, so the window stays
                # about one to two fsync times (well within the interval
                # unless the disk stalls, when the writer holds answers).
                target = self._committed
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - the writer must learn of any failure
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                for _ in range(target - self._synced):
                    self._times.popleft()
                self._synced = target
                self._cond.notify_all()


class WalFsync:
    """SQLite's group flush: fsync the WAL file (and its directory once per
    WAL file), which makes every frame written before it durable."""

    def __init__(self, database: Path) -> None:
        self._wal = Path(f"{database}-wal")
        self._synced_inode: int | None = None

    def __call__(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:
            # Checkpointed into the database file (and synced) by the last
            # connection closing: nothing is left to flush.
            return
        try:
            os.fsync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._synced_inode:
            directory = os.open(self._wal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._synced_inode = inode


class PostgresFlush:
    """PostgreSQL's group flush: a commit with `synchronous_commit=on` that
    has a transaction id (so it writes a commit record) flushes the WAL up to
    it, covering every asynchronous commit before it."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def __call__(self) -> None:
        with self._engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
            conn.exec_driver_sql("SELECT pg_current_xact_id()")


def group_flush(engine: sa.Engine) -> Callable[[], None] | None:
    """The flush for `engine`'s database, or None where nothing can be flushed
    (an in-memory SQLite database)."""
    if engine.dialect.name == "postgresql":
        return PostgresFlush(engine)
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return WalFsync(Path(database))
