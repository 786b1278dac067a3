"""Plugin liveness: Init after registration, then heartbeats.

The core routes nothing to a plugin before its Init succeeded. A plugin whose
Init fails or times out is `init_failed` (shown unhealthy): heartbeats do not
make it healthy; the core retries Init with backoff (`InitRetry`) for as long
as that registration is active, and only a successful Init makes it healthy.
A plugin whose Init answers but which does not serve a contract its manifest
lists (`NotServed`) is refused: it stays `init_failed`, Init is not retried
for that registration (the mismatch is in the plugin's code, not a moment's
failure), one `plugin.refused` record with reason `CONTRACT_NOT_SERVED`
names the contract, and the plugin is asked to shut down with that reason.
A plugin initialised once that then misses `misses` heartbeat intervals
becomes unhealthy; the core routes nothing to it until heartbeats resume.

Liveness is shared by every replica: heartbeats are stored in the database
(whichever replica receives them), and each transition is a conditional update
in the registry store, so of several replicas sweeping at once exactly one
makes it and reports it through `on_change` (the core audits it: registered
plugins becoming healthy, unhealthy, recovered). A heartbeat itself is counted
(`on_heartbeat`), not audited.

Lifecycle calls are made once per plugin, not once per replica: the replica
holding a plugin's lifecycle lease (`LifecycleLeases`) sends its Init and
health check and sweeps its heartbeats. The replica that admits a registration
takes the lease and sends Init; if it dies, another replica claims the lease
once it expires (one heartbeat-miss window, `interval × misses`) and sends
Init again if it never succeeded (the plugin is still `unknown`).

The interval may change while the core runs (`interval` returns the current
one; the sweep notices a change by comparing it with the last it read). A plugin learns the new
interval from its next heartbeat reply, so a plugin whose last heartbeat came
before the change is judged by the longer of the old and new intervals until it
has had `misses` old intervals to heartbeat; the sweep then uses the new one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.clock import Clock
from vivified.core.registry._connector import NotServed, PluginConnector
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._store import (
    ACTIVE,
    HEALTHY,
    INIT_FAILED,
    UNHEALTHY,
    UNKNOWN,
    HealthChange,
    PluginRecord,
    PluginStore,
)

ChangeSink = Callable[[HealthChange, str], Awaitable[None]]
"""Receives a transition this replica made and why (e.g. `missed 3 heartbeats`);
a refusal's `why` starts with its reason (`CONTRACT_NOT_SERVED: ...`)."""
CONTRACT_NOT_SERVED = "CONTRACT_NOT_SERVED"


async def _ignore(change: HealthChange, why: str) -> None:
    return None


_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitRetry:
    """Backoff between Init attempts of a plugin whose Init failed or timed out
    (each attempt itself keeps trying for the core's Init timeout)."""

    first_delay_seconds: float = 1.0
    """Wait before the first retry; doubled after each failed attempt."""
    max_delay_seconds: float = 30.0
    """The longest wait between attempts."""

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_seconds <= self.max_delay_seconds:
            raise ValueError("Init retry delays must be positive, the first no longer than the maximum")

    def delays(self) -> Iterator[float]:
        delay = self.first_delay_seconds
        while True:
            yield delay
            delay = min(delay * 2, self.max_delay_seconds)


class HealthMonitor:
    """Runs Init for new registrations and sweeps for missed heartbeats."""

    def __init__(
        self,
        store: PluginStore,
        connector: PluginConnector,
        clock: Clock,
        *,
        interval: Callable[[], float],
        misses: int,
        init_timeout: float,
        leases: LifecycleLeases,
        on_change: ChangeSink = _ignore,
        on_heartbeat: Callable[[str], None] = lambda _plugin_id: None,
        init_retry: InitRetry = InitRetry(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._connector = connector
        self._clock = clock
        self._interval = interval
        self._seen = interval()
        # (interval before the last change, monotonic time the sweep saw it change)
        self._previous: tuple[float, float] | None = None
        self._misses = misses
        self._init_timeout = init_timeout
        self._leases = leases
        self._held: set[str] = set()
        self._on_change = on_change
        self._on_heartbeat = on_heartbeat
        self._init_retry = init_retry
        self._sleep = sleep
        self._inits: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def registering(self, plugin_id: str) -> None:
        """Take the lifecycle lease of a plugin about to register here (before
        its row is written, so no other replica finds it active without one)."""
        await self._leases.take(plugin_id)
        self._held.add(plugin_id)

    def registered(self, record: PluginRecord) -> None:
        """Schedule Init for a plugin that just registered."""
        self._schedule_init(record)

    def _schedule_init(self, record: PluginRecord) -> None:
        """Init with retries (ending those of its previous registration on this
        replica, if any)."""
        previous = self._inits.pop(record.plugin_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._init_until_done(record))
        self._inits[record.plugin_id] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._inits.get(record.plugin_id) is finished:
                del self._inits[record.plugin_id]

        task.add_done_callback(done)

    async def _claim_leases(self) -> set[str]:
        """Renew and claim leases; Init the newly held plugins whose Init never succeeded."""
        held = await self._leases.renew_and_claim()
        for plugin_id in sorted(held - self._held):
            record = self._store.get(plugin_id)
            if record is not None and record.status == ACTIVE and record.health in (UNKNOWN, INIT_FAILED):
                _log.info("plugin %s: lifecycle lease taken over; sending Init", plugin_id)
                self._schedule_init(record)
        self._held = held
        return held

    async def _still_this_registration(self, record: PluginRecord) -> bool:
        """Whether `record`'s registration is still the active one and not yet initialised."""
        current = await self._store.fetch(record.plugin_id)
        return (
            current is not None
            and current.status == ACTIVE
            and current.endpoint == record.endpoint
            and current.health in (UNKNOWN, INIT_FAILED)
        )

    async def _init_until_done(self, record: PluginRecord) -> None:
        """Init, retried with backoff until it succeeds or the registration ends."""
        for delay in self._init_retry.delays():
            if await self._init(record):
                return
            await self._sleep(delay)
            if not await self._still_this_registration(record):
                return

    async def _init(self, record: PluginRecord) -> bool:
        """One Init attempt; True when it is over (initialised, or the registration ended)."""
        ok = await self._connector.init(record, self._init_timeout)
        if not await self._still_this_registration(record):
            return True
        await self._store.heartbeat(record.plugin_id)
        if isinstance(ok, NotServed):
            await self._refuse(record, ok)
            return True
        if not ok:
            change = await self._store.set_health(record.plugin_id, INIT_FAILED, expect=[UNKNOWN])
            _log.warning("plugin %s: Init failed or timed out; unhealthy, Init is retried", record.plugin_id)
            if change is not None:
                await self._on_change(change, "Init or health check failed; Init is retried with backoff")
            return False
        change = await self._store.set_health(record.plugin_id, HEALTHY, expect=[UNKNOWN, INIT_FAILED])
        _log.info("plugin %s initialised: healthy", record.plugin_id)
        if change is not None:
            await self._on_change(change, "Init answered and health SERVING")
        return True

    async def _refuse(self, record: PluginRecord, missing: NotServed) -> None:
        why = (
            f"{CONTRACT_NOT_SERVED}: the manifest lists contract {missing.service} but the plugin does not serve it"
            " (its health service does not know that service); nothing is routed to it"
        )
        _log.error("plugin %s refused: %s", record.plugin_id, why)
        change = await self._store.set_health(record.plugin_id, INIT_FAILED, expect=[UNKNOWN, INIT_FAILED])
        await self._on_change(change or HealthChange(record.plugin_id, record.health, INIT_FAILED), why)
        await self._connector.shutdown(record, why)

    async def heartbeat(self, plugin_id: str) -> None:
        """Note a heartbeat; an unhealthy plugin that heartbeats again recovers
        (one whose Init has not succeeded stays `init_failed`)."""
        record = await self._store.heartbeat(plugin_id)
        self._on_heartbeat(plugin_id)
        if record.health == UNHEALTHY:
            change = await self._store.set_health(plugin_id, HEALTHY, expect=[UNHEALTHY])
            if change is not None:
                _log.info("plugin %s is heartbeating again", plugin_id)
                await self._on_change(change, "heartbeating again")

    def _limit(self, interval: float, last_heartbeat: float) -> float:
        """How long a plugin whose last heartbeat was at `last_heartbeat` may stay silent."""
        if self._previous is not None and last_heartbeat < self._previous[1]:
            interval = max(interval, self._previous[0])
        return interval * self._misses

    async def sweep(self) -> list[str]:
        """Mark plugins unhealthy whose last stored heartbeat (on any replica)
        is too old, of the plugins whose lease this replica holds; returns the
        ids this replica marked."""
        now = self._clock.now().timestamp()
        interval = self._interval()
        if interval != self._seen:
            # The longest interval a plugin may still be heartbeating at.
            longest = self._seen if self._previous is None else max(self._seen, self._previous[0])
            self._previous, self._seen = (longest, now), interval
        if self._previous is not None and now - self._previous[1] > self._previous[0] * self._misses:
            self._previous = None  # every live plugin has heartbeated since and learned the new interval
        held = await self._claim_leases()
        marked = []
        for plugin_id, health, beat_ms in await self._store.liveness():
            if health != HEALTHY or plugin_id not in held:
                continue
            last = None if beat_ms is None else beat_ms / 1000
            limit = None if last is None else self._limit(interval, last)
            if last is not None and limit is not None and now - last <= limit:
                continue
            cutoff = int((now - (limit or 0)) * 1000) if last is not None else None
            change = await self._store.set_health(
                plugin_id, UNHEALTHY, expect=[HEALTHY], silent_before_ms=cutoff if cutoff is not None else 2**62
            )
            if change is None:
                continue  # it heartbeated meanwhile, or another replica marked it
            marked.append(plugin_id)
            _log.warning("plugin %s missed %d heartbeats; no traffic is routed to it", plugin_id, self._misses)
            await self._on_change(change, f"missed {self._misses} heartbeats")
        return marked

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval() / 2)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep retries; the registry sync reports the database
                _log.warning("heartbeat sweep failed: %s", exc)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_KINDS = {
    (UNKNOWN, HEALTHY): "healthy",
    (INIT_FAILED, HEALTHY): "healthy",
    (UNKNOWN, INIT_FAILED): "unhealthy",
    (UNHEALTHY, HEALTHY): "recovered",
}


def liveness_audit(audit: AuditLog) -> ChangeSink:
    """A ChangeSink writing one audit record per liveness transition:
        `plugin.healthy` (first successful Init, retried or not), `plugin.unhealthy`
        (Init failed or timed out, or missed heartbeats; `to` says which:
        `init_failed` or `unhealthy`), `plugin.recovered`, `plugin.refused` (Init
    answered but a listed contract is not served; `reason` CONTRACT_NOT_SERVED)."""

    async def record(change: HealthChange, why: str) -> None:
        kind = _KINDS.get((change.before, change.after), change.after)
        refused = why.startswith(f"{CONTRACT_NOT_SERVED}:")
        await audit.append(
            AuditRecord(
                actor="core:core",
                action="plugin.refused" if refused else f"plugin.{kind}",
                resource=f"plugin/{change.plugin_id}",
                decision="deny" if refused else "allow",
                reason=CONTRACT_NOT_SERVED if refused else "",
                outcome="FAILED_PRECONDITION" if refused else "OK",
                detail={"from": change.before, "to": change.after, "why": why},
            )
        )

    return record
