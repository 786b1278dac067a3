"""The settings a running core applies, kept current while it runs.

`LiveSettings` holds the base config (defaults < file < environment and
flags, no overrides) and the effective config: the base with the runtime
overrides stored in the database applied by `apply_overrides`, so an override
that no longer parses stays refused and reported. It re-reads the overrides

- right after a Set or Clear on this core (the admin call returns once this
  core applies the change), and
- every `settings_refresh_seconds` (CoreConfig), so every replica sharing the
  database applies a change at most that long (plus one database read) after
  it was stored.

Components read the current values when they act, through zero-argument
getters such as `lambda: live.current.events`; a component that must know
when a value changed compares what it last read (the health monitor does).

A refresh that cannot read the database logs, keeps the values in force and
is retried at the next poll: the core never crashes on it and never falls
back to lower layers it did not read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vivified.core.settings._apply import FIELDS, Applied, apply_overrides, effective
from vivified.core.settings._store import OverrideStore

if TYPE_CHECKING:
    # CoreConfig's module reads the settings table for its defaults.
    from vivified.core.config import CoreConfig

_log = logging.getLogger(__name__)


class LiveSettings:
    """The base config and the effective config.
    `applied` is what the core applied at start (`apply_overrides(base, ...)`)."""

    def __init__(
        self,
        base: CoreConfig,
        store: OverrideStore,
        applied: Applied,
        *,
        interval: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base = base
        self._store = store
        self._applied = applied
        self._interval = interval
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    @property
    def current(self) -> CoreConfig:
        """The effective config now: base plus the overrides applied at the last refresh."""
        return self._applied.config

    @property
    def applied(self) -> Applied:
        """The effective config with the overrides applied and those refused."""
        return self._applied

    async def refresh(self, actor: str | None = None) -> bool:
        """Re-read the stored overrides and apply them; True when an effective
        value changed. `actor` names who changed a setting on this core; for a
        change another replica stored, a cleared override's actor comes from
        history. Database errors propagate; the values in force stay."""
        async with self._lock:
            stored = await self._store.overrides()
            old = self._applied
            new = apply_overrides(self.base, stored)
            changed = [k for k in FIELDS if effective(old.config, k) != effective(new.config, k)]
            how: dict[str, tuple[str, str]] = {}
            for key in changed:
                if key in new.overrides:
                    how[key] = ("override", new.overrides[key].updated_by)
                elif key in stored:  # stored but refused: the lower layers' value applies
                    how[key] = ("override refused", stored[key].updated_by)
                else:
                    how[key] = ("override cleared", actor or await self._cleared_by(key))
            self._applied = new
            for key in sorted(set(new.refused) - set(old.refused)):
                _log.error("runtime override of %s not applied: %s", key, new.refused[key])
            for key in changed:
                _log.warning(
                    "core setting %s changed live: %s -> %s (%s, by %s)",
                    key,
                    effective(old.config, key),
                    effective(new.config, key),
                    *how[key],
                )
            return bool(changed)

    async def _cleared_by(self, key: str) -> str:
        last = await self._store.history(1, key)
        return last[0].changed_by if last and last[0].new_value is None else "unknown (not in history)"

    def start(self) -> None:
        """Poll the overrides every `interval` seconds until `stop`."""
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await self._sleep(self._interval)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - any failure keeps the values in force; the next poll retries
                _log.warning(
                    "runtime overrides not re-read (keeping the values in force, retrying in %gs): %s",
                    self._interval,
                    self._store.explain(exc),
                )
