"""The embedded store's tables and the operations the writer thread runs on them.

Tables:
- `events`: every stored event, `seq` is its position (global append order).
  AUTOINCREMENT: a plain rowid restarts below the old top once trimming has
  emptied the table, and cursors already past it would skip the new events.
- `dedupe`: `(source, event_id) -> seq` while inside the dedupe window; it
  outlives the event row, so a duplicate is recognised even after trimming.
- `subscriptions`: types, `cursor` (the highest seq handed out for the first
  time, or skipped because no type matched) and the `lost` counter.
- `pending`: per subscription, entries delivered and not yet acknowledged, or
  replayed and not yet delivered (`attempts = 0`). `generation` is 0 for the
  original delivery run and the dead-letter id after a replay; `lost = 1` marks
  an entry a cap forced out while it was pending; `data` holds a replayed
  entry's own copy (the original row may be gone by then).
- `dead_letters`: per subscription, entries that exhausted their attempts.

Every function here runs on the writer thread inside a transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from vivified.core.errors import FailedPrecondition
from vivified.core.events._store import (
    Appended,
    DeadLetter,
    Delivery,
    NewEvent,
    SubscriptionLag,
    plugin_of,
    subscription_limit,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, seq);
CREATE TABLE IF NOT EXISTS dedupe (
  source TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL, stored_ms INTEGER NOT NULL,
  PRIMARY KEY (source, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_by_time ON dedupe (stored_ms);
CREATE TABLE IF NOT EXISTS subscriptions (
  name TEXT PRIMARY KEY, event_types TEXT NOT NULL, cursor INTEGER NOT NULL, lost INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pending (
  subscription TEXT NOT NULL, seq INTEGER NOT NULL, event_type TEXT NOT NULL, generation INTEGER NOT NULL,
  attempts INTEGER NOT NULL, due_ms INTEGER NOT NULL, lost INTEGER NOT NULL DEFAULT 0, data BLOB,
  PRIMARY KEY (subscription, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT, subscription TEXT NOT NULL, seq INTEGER NOT NULL,
  event_type TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, dead_at_ms INTEGER NOT NULL,
  data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_by_subscription ON dead_letters (subscription, id);
"""

MISMATCH = "SUBSCRIPTION_MISMATCH"


def create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def delivery_id(seq: int, generation: int, attempt: int) -> str:
    """Opaque to callers; the attempt in it makes an ack from an earlier
    delivery of the same entry stale (it no longer matches the pending row)."""
    return f"{seq}.{generation}.{attempt}"


def parse_delivery_id(value: str) -> tuple[int, int, int] | None:
    parts = value.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def append(conn: sqlite3.Connection, events: Sequence[NewEvent], now_ms: int, window_ms: int) -> list[Appended]:
    results: list[Appended] = []
    for event in events:
        if window_ms > 0:
            row = conn.execute(
                "SELECT seq, stored_ms FROM dedupe WHERE source = ? AND event_id = ?", (event.source, event.event_id)
            ).fetchone()
            if row is not None and now_ms - row[1] < window_ms:
                results.append(Appended(position=str(row[0]), duplicate=True))
                continue
        seq = conn.execute(
            "INSERT INTO events (event_type, data) VALUES (?, ?)", (event.event_type, event.data)
        ).lastrowid
        if window_ms > 0:
            conn.execute(
                "INSERT OR REPLACE INTO dedupe (source, event_id, seq, stored_ms) VALUES (?, ?, ?, ?)",
                (event.source, event.event_id, seq, now_ms),
            )
        results.append(Appended(position=str(seq), duplicate=False))
    return results


def subscribe(conn: sqlite3.Connection, subscription: str, event_types: Sequence[str], max_per_plugin: int) -> None:
    wanted = sorted(set(event_types))
    row = conn.execute("SELECT event_types FROM subscriptions WHERE name = ?", (subscription,)).fetchone()
    if row is not None:
        if json.loads(row[0]) != wanted:
            raise FailedPrecondition(
                f"subscription {subscription!r} exists for event types {json.loads(row[0])}, not {wanted}; "
                "use another subscription name or the same types",
                reason=MISMATCH,
            )
        return
    prefix = plugin_of(subscription) + "/"
    held = conn.execute(
        "SELECT COUNT(*) FROM subscriptions WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
    ).fetchone()[0]
    if held >= max_per_plugin:
        raise subscription_limit(subscription, max_per_plugin)
    conn.execute(
        "INSERT INTO subscriptions (name, event_types, cursor) VALUES (?, ?, ?)",
        (subscription, json.dumps(wanted), _top(conn)),
    )


@dataclass(frozen=True)
class ReadResult:
    deliveries: list[Delivery]
    event_types: list[str]
    next_due_ms: int | None
    """When the subscription's earliest pending entry becomes due (None: nothing pending)."""


def _subscription(conn: sqlite3.Connection, subscription: str) -> tuple[list[str], int]:
    row = conn.execute("SELECT event_types, cursor FROM subscriptions WHERE name = ?", (subscription,)).fetchone()
    if row is None:
        raise FailedPrecondition(
            f"subscription {subscription!r} does not exist (never opened, or deleted); subscribe first",
            reason=MISMATCH,
        )
    return json.loads(row[0]), int(row[1])


def _top(conn: sqlite3.Connection) -> int:
    """The last position ever assigned (rows may have been trimmed since)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def _in(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def read(
    conn: sqlite3.Connection, subscription: str, count: int, now_ms: int, ack_timeout_ms: int, max_attempts: int
) -> ReadResult:
    types, cursor = _subscription(conn, subscription)
    deliveries: list[Delivery] = []
    due = conn.execute(
        "SELECT p.seq, p.event_type, p.generation, p.attempts, p.lost, COALESCE(p.data, e.data) "
        "FROM pending p LEFT JOIN events e ON e.seq = p.seq "
        "WHERE p.subscription = ? AND p.due_ms <= ? ORDER BY p.seq LIMIT ?",
        (subscription, now_ms, count),
    ).fetchall()
    for seq, event_type, generation, attempts, lost, data in due:
        payload = None if lost else data
        if attempts >= max_attempts and payload is not None:
            conn.execute(
                "INSERT INTO dead_letters (subscription, seq, event_type, attempts, reason, dead_at_ms, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (subscription, seq, event_type, attempts, f"delivery attempts exhausted ({attempts})", now_ms, payload),
            )
            conn.execute("DELETE FROM pending WHERE subscription = ? AND seq = ?", (subscription, seq))
            continue
        # An entry whose data is gone is handed out (data=None) rather than
        # dead-lettered: there is nothing to keep, and the loss must be seen.
        conn.execute(
            "UPDATE pending SET attempts = ?, due_ms = ? WHERE subscription = ? AND seq = ?",
            (attempts + 1, now_ms + ack_timeout_ms, subscription, seq),
        )
        deliveries.append(Delivery(delivery_id(seq, generation, attempts + 1), event_type, attempts + 1, payload))
    room = count - len(deliveries)
    if room > 0:
        # One index range per type, merged: a single query over several types
        # would sort the whole backlog of a lagging subscription on every read.
        fresh = sorted(
            row
            for event_type in types
            for row in conn.execute(
                "SELECT seq, event_type, data FROM events WHERE event_type = ? AND seq > ? ORDER BY seq LIMIT ?",
                (event_type, cursor, room),
            )
        )[:room]
        conn.executemany(
            "INSERT INTO pending (subscription, seq, event_type, generation, attempts, due_ms) "
            "VALUES (?, ?, ?, 0, 1, ?)",
            [(subscription, seq, event_type, now_ms + ack_timeout_ms) for seq, event_type, _ in fresh],
        )
        deliveries.extend(Delivery(delivery_id(seq, 0, 1), event_type, 1, data) for seq, event_type, data in fresh)
        # Nothing matching lies between the last entry read and the top when the
        # read came up short, so the cursor may move to the top (this keeps the
        # trim safe point moving for subscriptions whose types are quiet).
        if len(fresh) < room:
            top = _top(conn)
        else:
            top = fresh[-1][0]
        if top > cursor:
            conn.execute("UPDATE subscriptions SET cursor = ? WHERE name = ?", (top, subscription))
    next_due = conn.execute("SELECT MIN(due_ms) FROM pending WHERE subscription = ?", (subscription,)).fetchone()[0]
    return ReadResult(deliveries, types, next_due)


def _parsed(ids: Sequence[str]) -> list[tuple[int, int, int]]:
    # A malformed id cannot name a pending delivery: ignored like an unknown one.
    return [parsed for value in ids if (parsed := parse_delivery_id(value)) is not None]


def ack(conn: sqlite3.Connection, subscription: str, ids: Sequence[str]) -> int:
    _subscription(conn, subscription)
    acked = 0
    for seq, generation, attempt in _parsed(ids):
        acked += conn.execute(
            "DELETE FROM pending WHERE subscription = ? AND seq = ? AND generation = ? AND attempts = ?",
            (subscription, seq, generation, attempt),
        ).rowcount
    return acked


def nack(conn: sqlite3.Connection, subscription: str, ids: Sequence[str]) -> int:
    _subscription(conn, subscription)
    made_due = 0
    for seq, generation, attempt in _parsed(ids):
        made_due += conn.execute(
            "UPDATE pending SET due_ms = 0 WHERE subscription = ? AND seq = ? AND generation = ? AND attempts = ?",
            (subscription, seq, generation, attempt),
        ).rowcount
    return made_due


def dead_letters(conn: sqlite3.Connection, subscription: str, limit: int) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT id, seq, event_type, attempts, reason, dead_at_ms, data FROM dead_letters "
        "WHERE subscription = ? ORDER BY id LIMIT ?",
        (subscription, limit),
    ).fetchall()
    return [
        DeadLetter(str(id_), subscription, event_type, str(seq), attempts, reason, dead_at_ms, data)
        for id_, seq, event_type, attempts, reason, dead_at_ms, data in rows
    ]


def replay(conn: sqlite3.Connection, subscription: str, ids: Sequence[str]) -> int:
    _subscription(conn, subscription)
    query = "SELECT id, seq, event_type, data FROM dead_letters WHERE subscription = ?"
    params: list[object] = [subscription]
    if ids:
        wanted = [int(value) for value in ids if value.isdigit()]
        if not wanted:
            return 0
        query += f" AND id IN ({_in(wanted)})"
        params.extend(wanted)
    rows = conn.execute(query, params).fetchall()
    for id_, seq, event_type, data in rows:
        # Attempts 0 and due now: the next read delivers it as attempt 1.
        conn.execute(
            "INSERT OR REPLACE INTO pending (subscription, seq, event_type, generation, attempts, due_ms, data) "
            "VALUES (?, ?, ?, ?, 0, 0, ?)",
            (subscription, seq, event_type, id_, data),
        )
        conn.execute("DELETE FROM dead_letters WHERE id = ?", (id_,))
    return len(rows)


def delete(conn: sqlite3.Connection, subscription: str) -> bool:
    """The subscription and everything kept for it; events only it still
    needed go at the next trim."""
    if not conn.execute("DELETE FROM subscriptions WHERE name = ?", (subscription,)).rowcount:
        return False
    conn.execute("DELETE FROM pending WHERE subscription = ?", (subscription,))
    conn.execute("DELETE FROM dead_letters WHERE subscription = ?", (subscription,))
    return True


def drop_dead_letters(conn: sqlite3.Connection, max_dead_letters: int) -> dict[str, int]:
    """Per subscription over the cap, its oldest dead letters beyond it are discarded."""
    dropped: dict[str, int] = {}
    for name, held in conn.execute(
        "SELECT subscription, COUNT(*) FROM dead_letters GROUP BY subscription HAVING COUNT(*) > ?",
        (max_dead_letters,),
    ).fetchall():
        dropped[name] = conn.execute(
            "DELETE FROM dead_letters WHERE id IN "
            "(SELECT id FROM dead_letters WHERE subscription = ? ORDER BY id LIMIT ?)",
            (name, held - max_dead_letters),
        ).rowcount
    return dropped


def _backlog(conn: sqlite3.Connection, subscription: str, types: list[str], cursor: int) -> tuple[int, int]:
    delivered, replayed = conn.execute(
        "SELECT COALESCE(SUM(attempts > 0), 0), COALESCE(SUM(attempts = 0), 0) FROM pending "
        "WHERE subscription = ? AND lost = 0",
        (subscription,),
    ).fetchone()
    stored = conn.execute(
        f"SELECT COUNT(*) FROM events WHERE seq > ? AND event_type IN ({_in(types)})", (cursor, *types)
    ).fetchone()[0]
    return int(delivered), int(replayed) + int(stored)


def lag(conn: sqlite3.Connection) -> list[SubscriptionLag]:
    result = []
    for name, types, cursor, lost in conn.execute(
        "SELECT name, event_types, cursor, lost FROM subscriptions ORDER BY name"
    ).fetchall():
        pending, undelivered = _backlog(conn, name, json.loads(types), cursor)
        result.append(SubscriptionLag(name, pending, undelivered, lost))
    return result


def force_out(conn: sqlite3.Connection, subscription: str, types: list[str], cursor: int, excess: int) -> int:
    """Drop the subscription's `excess` oldest unacknowledged entries: pending
    ones are marked lost (their next delivery carries no data), undelivered ones
    are skipped by moving the cursor. Other subscriptions keep theirs."""
    victims = conn.execute(
        "SELECT seq, 'p' FROM pending WHERE subscription = ? AND lost = 0 "
        f"UNION ALL SELECT seq, 'u' FROM events WHERE seq > ? AND event_type IN ({_in(types)}) "
        "ORDER BY 1 LIMIT ?",
        (subscription, cursor, *types, excess),
    ).fetchall()
    pending = [(subscription, seq) for seq, kind in victims if kind == "p"]
    conn.executemany("UPDATE pending SET lost = 1, data = NULL WHERE subscription = ? AND seq = ?", pending)
    skipped = [seq for seq, kind in victims if kind == "u"]
    if skipped:
        conn.execute("UPDATE subscriptions SET cursor = ? WHERE name = ?", (max(skipped), subscription))
    conn.execute("UPDATE subscriptions SET lost = lost + ? WHERE name = ?", (len(victims), subscription))
    return len(victims)


def trim(conn: sqlite3.Connection, max_backlog: int, now_ms: int, window_ms: int) -> tuple[int, dict[str, int]]:
    lost: dict[str, int] = {}
    safe: dict[str, int] = {}
    for name, types_json, cursor in conn.execute(
        "SELECT name, event_types, cursor FROM subscriptions ORDER BY name"
    ).fetchall():
        types = json.loads(types_json)
        backlog = sum(_backlog(conn, name, types, cursor))
        if backlog > max_backlog:
            lost[name] = force_out(conn, name, types, cursor, backlog - max_backlog)
            cursor = conn.execute("SELECT cursor FROM subscriptions WHERE name = ?", (name,)).fetchone()[0]
        for event_type in types:
            safe[event_type] = min(safe.get(event_type, cursor), cursor)
    removed = 0
    stored_types = [row[0] for row in conn.execute("SELECT DISTINCT event_type FROM events").fetchall()]
    for event_type in stored_types:
        # Below every cursor of the type's subscriptions, and not pending
        # anywhere with its data still needed: every subscription acknowledged it.
        # A type nobody subscribes to has no reader (subscriptions start at new events).
        bound = safe.get(event_type)
        removed += conn.execute(
            "DELETE FROM events WHERE event_type = ? AND seq <= COALESCE(?, seq) AND seq NOT IN "
            "(SELECT seq FROM pending WHERE lost = 0 AND data IS NULL)",
            (event_type, bound),
        ).rowcount
    conn.execute("DELETE FROM dedupe WHERE stored_ms <= ?", (now_ms - window_ms,))
    return removed, lost
