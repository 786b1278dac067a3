"""Plugin config values and their history in the database, and the watchers
waiting for a plugin's next change.

A change is one write transaction: the old row is read, the value written and
the history row added together, so history never misses or invents a change.
Secret values are sealed before they reach SQL, and history holds `MASK` in
their place. Watchers are per core process. A change made through another
core sharing the database reaches this core's watchers through `poll`, which
reads the history rows after the last one this core saw (`ConfigFollower` runs
it on a PostgreSQL notification and every `sync_bound / 4` seconds).
Config writes hold one advisory lock, so history ids are committed in order
and reading `change_id > seen` misses none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.db import write_transaction
from vivified.core.plugin_config._keyring import SecretsKeyring
from vivified.core.plugin_config._schema import (
    config_history_table,
    config_values_table,
)

MASK = "********"
_PG_LOCK_KEY = 0x766976_636F6E66  # "viv" "conf"
NOTIFY_CHANNEL = "vivified_config"
"""PostgreSQL channel every config change is notified on (payload: the plugin id)."""
T = TypeVar("T")


@dataclass(frozen=True)
class StoredValue:
    """One row of `plugin_config_values`; `value` is ciphertext when `key_id` is set."""

    key: str
    value: str
    key_id: str | None
    updated_by: str
    updated_at: int


@dataclass(frozen=True)
class Change:
    """One row of history (a secret's values are `MASK`)."""

    key: str
    old_value: str | None
    new_value: str
    changed_by: str
    reason: str
    changed_at: int


class PluginConfigStore:
    """Durable plugin config values with history, and change notification."""

    def __init__(self, engine: sa.Engine, clock: Clock, keyring: SecretsKeyring) -> None:
        self._engine = engine
        self._clock = clock
        self.keyring = keyring
        self._watchers: dict[str, set[asyncio.Queue[None]]] = {}
        self._seen = 0
        self._local: set[int] = set()  # history ids written (and notified) here, not yet polled
        self._pg = engine.dialect.name == "postgresql"

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    async def values(self, plugin_id: str) -> dict[str, StoredValue]:
        def read() -> dict[str, StoredValue]:
            t = config_values_table
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.select(t.c.key, t.c.value, t.c.key_id, t.c.updated_by, t.c.updated_at).where(
                        t.c.plugin_id == plugin_id
                    )
                ).all()
            return {r.key: StoredValue(r.key, r.value, r.key_id, r.updated_by, r.updated_at) for r in rows}

        return await self._run(read)

    async def secret(self, plugin_id: str, key: str) -> str | None:
        """The clear value of a sealed secret, or None when unset (or stored
        unsealed, i.e. not as a secret). For the core's own use (egress
        credential injection); never returned to a plugin."""
        stored = (await self.values(plugin_id)).get(key)
        if stored is None or stored.key_id is None:
            return None
        return self.keyring.open(plugin_id, key, stored.key_id, stored.value)

    async def set(self, plugin_id: str, key: str, value: str, *, secret: bool, actor: str, reason: str) -> StoredValue:
        """Store `value` (sealed when `secret`) and its history row; wake watchers."""
        now = int(self._clock.now().timestamp())
        if secret:
            key_id, stored = self.keyring.seal(plugin_id, key, value)
        else:
            key_id, stored = None, value
        row = StoredValue(key, stored, key_id, actor, now)

        def write() -> int:
            v, h = config_values_table, config_history_table
            with write_transaction(self._engine, pg_lock=_PG_LOCK_KEY) as conn:
                old = conn.execute(
                    sa.select(v.c.value, v.c.key_id).where(v.c.plugin_id == plugin_id, v.c.key == key)
                ).first()
                fields = {"value": stored, "key_id": key_id, "updated_by": actor, "updated_at": now}
                if old is None:
                    conn.execute(sa.insert(v).values(plugin_id=plugin_id, key=key, **fields))
                    old_text = None
                else:
                    conn.execute(sa.update(v).where(v.c.plugin_id == plugin_id, v.c.key == key).values(**fields))
                    old_text = MASK if secret or old.key_id is not None else old.value
                inserted = conn.execute(
                    sa.insert(h).values(
                        plugin_id=plugin_id,
                        key=key,
                        old_value=old_text,
                        new_value=MASK if secret else value,
                        changed_by=actor,
                        reason=reason,
                        changed_at=now,
                    )
                )
                if self._pg:
                    conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, plugin_id)))
                key_row = inserted.inserted_primary_key
                if key_row is None:
                    raise RuntimeError("the database returned no id for the config history row")
                return int(key_row[0])

        self._local.add(await self._run(write))
        self._notify(plugin_id)
        return row

    async def history(self, plugin_id: str, limit: int) -> list[Change]:
        def read() -> list[Change]:
            h = config_history_table
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.select(h.c.key, h.c.old_value, h.c.new_value, h.c.changed_by, h.c.reason, h.c.changed_at)
                    .where(h.c.plugin_id == plugin_id)
                    .order_by(h.c.change_id.desc())
                    .limit(limit)
                ).all()
            return [Change(*r) for r in rows]

        return await self._run(read)

    async def prime(self) -> None:
        """Start following from the newest history row (earlier ones are not news)."""

        def read() -> int:
            with self._engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.max(config_history_table.c.change_id))).scalar() or 0)

        self._seen = max(self._seen, await self._run(read))

    async def poll(self) -> int:
        """Wake the watchers of every plugin whose config another core changed
        since the last poll; returns how many history rows were new."""
        after = self._seen

        def read() -> list[tuple[int, str]]:
            h = config_history_table
            with self._engine.connect() as conn:
                rows = conn.execute(
                    sa.select(h.c.change_id, h.c.plugin_id).where(h.c.change_id > after).order_by(h.c.change_id)
                ).all()
            return [(int(r.change_id), r.plugin_id) for r in rows]

        rows = await self._run(read)
        for change_id, plugin_id in rows:
            self._seen = max(self._seen, change_id)
            if change_id in self._local:
                self._local.discard(change_id)  # its watchers were woken when it was written
            else:
                self._notify(plugin_id)
        return len(rows)

    def watch(self, plugin_id: str) -> asyncio.Queue[None]:
        """A queue that receives a wake-up after each change (one pending at most)."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._watchers.setdefault(plugin_id, set()).add(queue)
        return queue

    def unwatch(self, plugin_id: str, queue: asyncio.Queue[None]) -> None:
        queues = self._watchers.get(plugin_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._watchers[plugin_id]

    def _notify(self, plugin_id: str) -> None:
        for queue in self._watchers.get(plugin_id, ()):
            if queue.empty():  # a pending wake-up already covers this change
                queue.put_nowait(None)
