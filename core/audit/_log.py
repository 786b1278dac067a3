"""The audit writer: group commit on one thread, chained inside the transaction.

Every `append` enqueues its record and waits. A single writer thread takes
everything queued (up to `max_batch`), reads the chain head inside the
transaction, chains the batch onto it, inserts it and commits; only then are
the callers' futures resolved. One commit (one fsync) thus covers many
records, and the event loop never blocks on the database. If the transaction
fails, every caller in the batch gets the exception and nothing is chained:
the head is re-read from the database, never advanced in memory alone.

When the callers' futures resolve depends on the durability mode (see
`_durability`): in `fsync` mode the commit itself is fsynced; in `group` mode
the commit hands the batch to the OS (or the PostgreSQL server) and the
`GroupSync` thread fsyncs within the sync interval, off the writer's path.
A checkpoint is signed only over records already flushed, so a power loss
can never leave a checkpoint pointing past the durable chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from vivified.core.audit._checkpoint import Checkpoint, CheckpointSigner
from vivified.core.audit._durability import AuditSyncFailed, Durability, GroupSync, group_flush
from vivified.core.audit._handoff import Outbox, Pending, settle
from vivified.core.audit._record import GENESIS_HASH, AuditRecord, StoredRecord
from vivified.core.audit._statements import WriterStatements
from vivified.core.audit._tail import AuditTailTampered, TailCheck, check_tail
from vivified.core.clock import Clock
from vivified.core.db import write_transaction, write_transaction_on

_log = logging.getLogger(__name__)

# Several writers (core replicas on PostgreSQL, or processes on one SQLite
# file) share the table, so each batch runs in a write transaction that
# serialises them before the head is read: an advisory lock on this key on
# PostgreSQL, the write lock on SQLite. The primary key on seq remains the
# last line: a lost race would be a failed batch, never a fork.
_PG_LOCK_KEY = 0x766976_61756474  # "viv" "audt"


_STOP = object()


class AuditLog:
    """Append-only, hash-chained audit log with signed checkpoints.

    `on_commit(batch_size, seconds)` is called on the writer thread after each
    commit with the duration of the transaction (metrics plug in here).
    `on_failure(exc)` is called on the writer thread when a batch cannot be
    written, once per run of failures (the core raises a SecurityAlert).

    `start` checks the tail first (see `check_tail`). `shared_chain` says other
    core replicas append to the same chain. `exclusive` is False for a short
    command beside a core that may be running: its closing checkpoint is final
    only when it started on a final one (a running core's next records would
    otherwise follow a final checkpoint).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        clock: Clock,
        signer: CheckpointSigner,
        checkpoint_path: Path,
        checkpoint_every: float = 10.0,
        max_batch: int = 512,
        on_commit: Callable[[int, float], None] | None = None,
        shared_chain: bool = False,
        exclusive: bool = True,
        durability: Durability | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        if max_batch < 1 or checkpoint_every <= 0:
            raise ValueError("max_batch must be >= 1 and checkpoint_every > 0")
        self._engine = engine
        self._clock = clock
        self._signer = signer
        self._checkpoint_path = checkpoint_path
        self._every = checkpoint_every
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._failing = False
        self._shared_chain = shared_chain
        self._exclusive = exclusive
        self._final_at_close = exclusive
        self._statements = WriterStatements(engine.dialect)
        self.durability = durability if durability is not None else Durability()
        flush = group_flush(engine) if self.durability.mode == "group" else None
        self._sync = GroupSync(flush, self.durability.sync_interval, clock.monotonic) if flush is not None else None
        # PostgreSQL in group mode: each batch commits asynchronously
        # (`synchronous_commit=off`), the sync thread's flush covers it.
        self._async_commit = self._sync is not None and engine.dialect.name == "postgresql"
        # An embedded SQLite file has no server to lose a connection to, so
        # the writer keeps one for its lifetime instead of a pool checkout
        # and reset per batch. On PostgreSQL each batch checks one out (and
        # pre-pings it), so a restarted server costs no batch.
        self._hold_connection = engine.dialect.name == "sqlite"
        self._held: sa.Connection | None = None
        # Lists of appends, one per event-loop iteration (see `Outbox`), or _STOP.
        self._queue: queue.SimpleQueue[list[Pending] | object] = queue.SimpleQueue()
        self._outbox = Outbox(self._queue.put)
        self._thread: threading.Thread | None = None
        self._closed = False
        # Owned by the writer thread once started.
        self._head: tuple[int, str] = (0, GENESIS_HASH)
        self._checkpointed_seq = 0
        self._last_checkpoint: float | None = None

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record this log committed or loaded."""
        return self._head

    async def start(self, *, accept_tampering: int | None = None) -> TailCheck:
        """Check the tail from the last checkpoint to the head, load the chain
        head, anchor it with a checkpoint if the table is not empty, and start
        the writer thread.

        Raises AuditTailTampered when the tail fails its check, unless
        `accept_tampering` is the first bad seq it names (an operator's
        explicit decision, which the caller must record first). Returns what
        the check found, so the caller can record an unanchored tail.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("audit log already started")
        check = await asyncio.to_thread(
            check_tail,
            self._engine,
            self._checkpoint_path,
            self._signer.public_key(),
            shared_chain=self._shared_chain,
        )
        if check.first_bad_seq is not None and check.first_bad_seq != accept_tampering:
            raise AuditTailTampered(check.first_bad_seq, check.problem)
        if not self._exclusive:
            self._final_at_close = check.final
        self._head = await asyncio.to_thread(self._read_head)
        if self._sync is not None:
            # A previous run killed in group mode may have left records only
            # in the page cache: make them durable before anchoring them.
            await asyncio.to_thread(self._sync.flush_once)
        if self._head[0] > 0:
            await asyncio.to_thread(self._write_checkpoint)
        if self._sync is not None:
            self._sync.start()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        return check

    async def append(self, record: AuditRecord) -> StoredRecord:
        """Record `record`; returns once it is committed: fsynced in `fsync`
        mode, handed to the OS and fsynced within the sync interval in `group`
        mode. Raises whatever made the write fail (AuditSyncFailed once a
        group sync failed): the caller must fail its call."""
        if self._thread is None or self._closed or not self._thread.is_alive():
            raise RuntimeError("audit log is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredRecord] = loop.create_future()
        self._outbox.add(Pending(record, self._clock.now(), future, loop))
        # A caller cancelled while waiting does not stop the write: the record
        # still commits (the writer skips its cancelled future).
        return await future

    async def close(self) -> None:
        """Drain queued records, write a final checkpoint, stop the writer."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._outbox.flush()  # appends of this loop iteration go before the stop
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    # -- writer thread -------------------------------------------------------

    def _run(self) -> None:
        wake = min(max(self._every, 0.05), 1.0)
        while True:
            try:
                item = self._queue.get(timeout=wake)
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            stop = item is _STOP
            batch: list[Pending] = []
            if isinstance(item, list):
                batch.extend(item)
            while not stop and len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                elif isinstance(more, list):
                    batch.extend(more)
            if batch:
                for start in range(0, len(batch), self._max_batch):
                    self._commit(batch[start : start + self._max_batch])
            if stop and self._queue.empty():
                # Always, even when nothing changed since the last one: the
                # final flag is what says no record may follow.
                if self._final_at_close or self._head[0] != self._checkpointed_seq:
                    self._write_checkpoint(final=self._final_at_close)
                self._release_connection()
                if self._sync is not None:
                    self._sync.stop()
                return
            if stop:
                # Appends raced with close(); serve them before stopping.
                self._queue.put(_STOP)

    def _commit(self, batch: list[Pending]) -> None:
        started = self._clock.monotonic()
        if self._sync is not None and self._sync.error is not None:
            # Records already acknowledged may not be durable: the log stops
            # accepting more (fail closed) until an operator restarts the core.
            failed = AuditSyncFailed(f"the audit group sync failed: {self._sync.error}")
            self._failed(failed)
            settle(batch, None, failed)
            return
        try:
            with self._transaction() as conn:
                if self._async_commit:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                seq, prev = self._statements.read_head(conn)
                stored = []
                for pending in batch:
                    seq += 1
                    record = StoredRecord.chain(pending.record, seq=seq, time=pending.time, prev_hash=prev)
                    prev = record.hash
                    stored.append(record)
                self._statements.insert(conn, stored)
        except Exception as exc:  # noqa: BLE001 - every caller must learn of any failure
            _log.error("audit batch of %d failed: %s", len(batch), type(exc).__name__)
            self._failed(exc)
            settle(batch, None, exc)
            try:
                self._head = self._read_head()
            except Exception:  # noqa: BLE001 - the writer thread must survive
                _log.exception("audit head reload failed")
            return
        self._head = (stored[-1].seq, stored[-1].hash)
        self._failing = False
        if self._sync is not None:
            self._sync.committed()
        if self._on_commit is not None:
            try:
                self._on_commit(len(batch), self._clock.monotonic() - started)
            except Exception:  # noqa: BLE001 - a metrics bug must not fail audit
                _log.exception("audit on_commit hook failed")
        self._checkpoint_if_due()
        if self._sync is not None:
            try:
                # The answers leave only while the sync keeps within its bound.
                self._sync.hold_within_bound()
            except AuditSyncFailed as exc:
                _log.critical("audit group sync failed; refusing further records: %s", exc)
                self._failed(exc)
                settle(batch, None, exc)
                return
        settle(batch, stored, None)

    def _failed(self, exc: BaseException) -> None:
        if self._failing or self._on_failure is None:
            self._failing = True
            return
        self._failing = True
        try:
            self._on_failure(exc)
        except Exception:  # noqa: BLE001 - the writer thread must survive
            _log.exception("audit on_failure hook failed")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        if not self._hold_connection:
            with write_transaction(self._engine, pg_lock=_PG_LOCK_KEY) as conn:
                yield conn
            return
        if self._held is None:
            # Autocommit, as `write_transaction_on` sets it, so the pragma
            # below opens no transaction.
            self._held = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # Per connection: this one's commits are fsynced by the group
            # sync in group mode, by SQLite itself in fsync mode.
            synchronous = "NORMAL" if self._sync is not None else "FULL"
            self._held.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
        try:
            with write_transaction_on(self._held, pg_lock=_PG_LOCK_KEY) as conn:
                yield conn
        except BaseException:
            # Whatever broke, the next batch starts on a fresh connection.
            self._release_connection()
            raise

    def _release_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                if self._sync is not None:
                    # Never hand a connection with synchronous=NORMAL back to
                    # the pool, where other state writes would get it.
                    held.invalidate()
                held.close()
            except Exception:  # noqa: BLE001 - the writer thread must survive
                _log.exception("closing the audit writer's connection failed")

    def _checkpoint_if_due(self) -> None:
        due = self._last_checkpoint is None or self._clock.monotonic() - self._last_checkpoint >= self._every
        if due and self._head[0] != self._checkpointed_seq:
            self._write_checkpoint()

    def _write_checkpoint(self, *, final: bool = False) -> Checkpoint | None:
        seq, head_hash = self._head
        if seq == 0:
            return None
        if self._sync is not None and self._thread is not None:
            # (Before the threads start, `start` has flushed already.)
            try:
                self._sync.barrier()  # sign only what is on disk
            except AuditSyncFailed:
                _log.exception("audit checkpoint at %d not written: the group sync failed", seq)
                return None
        try:
            checkpoint = self._signer.write(
                self._checkpoint_path, seq=seq, hash=head_hash, count=seq, time=self._clock.now(), final=final
            )
        except Exception:  # noqa: BLE001 - the writer thread must survive
            # The records are committed; losing one anchor only widens the
            # window an attacker could truncate, so log loudly and go on.
            _log.exception("audit checkpoint write to %s failed", self._checkpoint_path)
            return None
        self._checkpointed_seq = seq
        self._last_checkpoint = self._clock.monotonic()
        return checkpoint

    def _read_head(self) -> tuple[int, str]:
        with self._engine.connect() as conn:
            return self._statements.read_head(conn)
