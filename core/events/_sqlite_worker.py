"""One SQLite connection on a dedicated thread with group commit.

Every operation is a function of the connection. The thread takes everything
queued, runs it in one transaction (each operation in its own savepoint, so a
failing one does not undo the others) and commits once: concurrent appends share
one fsync. Futures resolve on the event loop only after the commit, so an
acknowledgement always means "on disk" (WAL, synchronous=FULL).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

# Operations per transaction at most: bounds the latency one commit adds to the
# first operation of a batch while still sharing an fsync among many appends.
_MAX_BATCH = 512


class SqliteWorker:
    """Serialises every access to one SQLite database on one thread."""

    def __init__(self, path: pathlib.Path, schema: Callable[[sqlite3.Connection], None]) -> None:
        self._path = path
        self._schema = schema
        self._queue: queue.SimpleQueue[tuple[Operation, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, ready), name="event-store-sqlite", daemon=True
        )
        self._thread.start()
        await ready

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `operation`; the future resolves after its transaction commits."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the event store is not started")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((operation, future))
        return future

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._open()
        except Exception as exc:  # noqa: BLE001 - reported to start()'s caller
            failed: list[Outcome] = [(ready, None, exc)]
            loop.call_soon_threadsafe(_settle, failed)
            return
        started: list[Outcome] = [(ready, None, None)]
        loop.call_soon_threadsafe(_settle, started)
        try:
            while (batch := self._take()) is not None:
                loop.call_soon_threadsafe(_settle, self._execute(conn, batch))
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit fsyncs the WAL, so a committed append survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        self._schema(conn)
        conn.execute("COMMIT")
        return conn

    def _take(self) -> list[tuple[Operation, asyncio.Future[Any]]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _execute(self, conn: sqlite3.Connection, batch: list[tuple[Operation, asyncio.Future[Any]]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for operation, future in batch:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((future, operation(conn), None))
                    conn.execute("RELEASE op")
                except Exception as exc:  # noqa: BLE001 - handed to the caller's future
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((future, None, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The transaction (or its commit) failed: nothing in it is durable.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(future, None, exc) for _, future in batch]
        return outcomes


def _settle(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller gave up (timeout, cancellation)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
