"""Runtime overrides of core settings in the database, with their history.

A change is one write transaction: the old row is read, the override written
or deleted and the history row added together, so history never misses or
invents a change. `read_overrides` is synchronous: the core calls it at start,
before its event loop work begins, and `vivified config show` calls it without
a running core; while the core runs, LiveSettings reads through `overrides`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.db import driver_message, write_transaction
from vivified.core.settings._schema import history_table, overrides_table

_PG_LOCK_KEY = 0x766976_636F7265  # "viv" "core"


@dataclass(frozen=True)
class Override:
    """One stored override: the canonical text of the value, who set it, when and why."""

    key: str
    value: str
    updated_by: str
    reason: str
    updated_at: int


@dataclass(frozen=True)
class OverrideChange:
    """One history row; `new_value` None records a cleared override."""

    key: str
    old_value: str | None
    new_value: str | None
    changed_by: str
    reason: str
    changed_at: int


def read_overrides(engine: sa.Engine) -> dict[str, Override]:
    """Every stored override by key."""
    t = overrides_table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.key, t.c.value, t.c.updated_by, t.c.reason, t.c.updated_at)).all()
    return {r.key: Override(*r) for r in rows}


class OverrideStore:
    """Durable overrides with history."""

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def explain(self, exc: BaseException) -> str:
        """A failure reading or writing overrides on one line, the database password cut out."""
        return driver_message(exc, self._engine.url)

    async def overrides(self) -> dict[str, Override]:
        return await asyncio.to_thread(read_overrides, self._engine)

    async def change(self, key: str, value: str | None, *, actor: str, reason: str) -> OverrideChange:
        """Store `value` for `key` (None clears it) and its history row; return the change."""
        now = int(self._clock.now().timestamp())

        def write() -> OverrideChange:
            o, h = overrides_table, history_table
            with write_transaction(self._engine, pg_lock=_PG_LOCK_KEY) as conn:
                old = conn.execute(sa.select(o.c.value).where(o.c.key == key)).scalar_one_or_none()
                fields = {"value": value, "updated_by": actor, "reason": reason, "updated_at": now}
                if value is None:
                    conn.execute(sa.delete(o).where(o.c.key == key))
                elif old is None:
                    conn.execute(sa.insert(o).values(key=key, **fields))
                else:
                    conn.execute(sa.update(o).where(o.c.key == key).values(**fields))
                change = OverrideChange(key, old, value, actor, reason, now)
                conn.execute(
                    sa.insert(h).values(
                        key=key, old_value=old, new_value=value, changed_by=actor, reason=reason, changed_at=now
                    )
                )
            return change

        return await asyncio.to_thread(write)

    async def history(self, limit: int, key: str | None = None) -> list[OverrideChange]:
        """The newest `limit` changes, of `key` only when given."""

        def read() -> list[OverrideChange]:
            h = history_table
            query = sa.select(h.c.key, h.c.old_value, h.c.new_value, h.c.changed_by, h.c.reason, h.c.changed_at)
            if key is not None:
                query = query.where(h.c.key == key)
            with self._engine.connect() as conn:
                rows = conn.execute(query.order_by(h.c.change_id.desc()).limit(limit)).all()
            return [OverrideChange(*r) for r in rows]

        return await asyncio.to_thread(read)
