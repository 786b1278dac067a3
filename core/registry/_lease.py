"""Lifecycle leases: which replica makes a plugin's core → plugin lifecycle
calls (Init and its health check) and runs its heartbeat sweep, so that
several replicas make them once per plugin, not once each.

A lease is a row (`plugin_lifecycle_leases`) naming the holder replica and an
expiry. The replica that admits a registration takes the plugin's lease (a new
registration starts a new lifecycle, whoever held the old one). Every sweep,
each replica renews the leases it holds and claims the expired ones and those
of active plugins with none; all lease writes hold one advisory lock, so of
two replicas claiming the same expired lease exactly one gets it. A replica
killed without a word loses its leases `ttl` after its last renewal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.db import write_transaction
from vivified.core.kinds import PluginStatus
from vivified.core.registry._schema import lifecycle_leases_table, plugins_table

_PG_LOCK_KEY = 0x766976_6C656173  # "viv" "leas"


class LifecycleLeases:
    """This replica's side of the lease table (`holder` is its replica id)."""

    def __init__(self, engine: sa.Engine, clock: Clock, holder: str, ttl: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self.holder = holder
        self._ttl = ttl

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    async def take(self, plugin_id: str) -> None:
        """Hold `plugin_id`'s lease from now on (its registration was admitted here)."""
        now = self._now_ms()
        t = lifecycle_leases_table

        def write() -> None:
            with write_transaction(self._engine, pg_lock=_PG_LOCK_KEY) as conn:
                values = {"holder": self.holder, "expires_ms": now + int(self._ttl() * 1000)}
                if not conn.execute(sa.update(t).where(t.c.plugin_id == plugin_id).values(**values)).rowcount:
                    conn.execute(sa.insert(t).values(plugin_id=plugin_id, **values))

        await asyncio.to_thread(write)

    async def renew_and_claim(self) -> set[str]:
        """Renew this replica's unexpired leases, claim the expired ones and
        those of active plugins without one; returns the ids held now."""
        now = self._now_ms()
        t, p = lifecycle_leases_table, plugins_table

        def write() -> set[str]:
            with write_transaction(self._engine, pg_lock=_PG_LOCK_KEY) as conn:
                until = now + int(self._ttl() * 1000)
                conn.execute(
                    sa.update(t)
                    .where(sa.or_(t.c.holder == self.holder, t.c.expires_ms < now))
                    .values(holder=self.holder, expires_ms=until)
                )
                leased = sa.select(t.c.plugin_id)
                unleased = (
                    conn.execute(
                        sa.select(p.c.plugin_id).where(p.c.status == PluginStatus.ACTIVE, p.c.plugin_id.not_in(leased))
                    )
                    .scalars()
                    .all()
                )
                for plugin_id in unleased:
                    conn.execute(sa.insert(t).values(plugin_id=plugin_id, holder=self.holder, expires_ms=until))
                return set(conn.execute(sa.select(t.c.plugin_id).where(t.c.holder == self.holder)).scalars())

        return await asyncio.to_thread(write)
