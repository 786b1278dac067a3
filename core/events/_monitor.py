"""Watching subscription backlogs: lag metrics, alerts before a cap bites, trimming.

Each pass (every `interval` seconds) reads every subscription's backlog,
publishes a `SecurityAlert` (kind `event_backlog_high`) for each one that has
passed `alert_fraction` of `max_backlog` since its last alert, and only then
trims: acknowledged entries go, and a subscription still above its cap loses
its oldest unacknowledged entries, which is audited, counted and alerted
(kind `events_lost`). The alert therefore always precedes the loss. Between
passes a backlog may exceed the cap by what arrives in one interval. The same
pass discards each subscription's oldest dead letters beyond `max_dead_letters`,
audited, counted and alerted likewise (kind `dead_letters_dropped`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from vivified.core.audit import AuditLog
from vivified.core.errors import Unavailable
from vivified.core.events._alerts import Alerts
from vivified.core.events._config import EventsConfig
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._store import EventStore, SubscriptionLag
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SEVERITY_WARNING

_log = logging.getLogger(__name__)


class BacklogMonitor:
    """The event bus's periodic housekeeping."""

    def __init__(
        self,
        *,
        store: EventStore,
        stamper: EnvelopeStamper,
        audit: AuditLog,
        config: Callable[[], EventsConfig],
        on_lag: Callable[[Iterable[SubscriptionLag]], None],
        on_lost: Callable[[str, int], None],
        on_dead_letters_dropped: Callable[[str, int], None],
        interval: float = 1.0,
    ) -> None:
        self._store = store
        self._alert = Alerts(store=store, stamper=stamper, audit=audit).raise_alert
        self._current = config
        self._on_lag = on_lag
        self._on_lost = on_lost
        self._on_dead_letters_dropped = on_dead_letters_dropped
        self._interval = interval
        self._alerted: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def _config(self) -> EventsConfig:
        return self._current()  # the backlog cap may change while the core runs

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Unavailable as exc:
                _log.warning("event housekeeping skipped: %s", exc.message)
            except Exception:  # noqa: BLE001 - housekeeping must outlive one bad pass; the next may succeed
                _log.exception("event housekeeping pass failed")
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # stop() cancelled the pass just as a store call finished, and
                # Python 3.11's wait_for then returns the result instead of raising.
                raise asyncio.CancelledError
            await asyncio.sleep(self._interval)

    async def run_once(self) -> None:
        lags = await self._store.lag()
        self._on_lag(lags)
        threshold = self._config.alert_fraction * self._config.max_backlog
        for lag in lags:
            if lag.backlog >= threshold and lag.subscription not in self._alerted:
                self._alerted.add(lag.subscription)
                await self._alert(
                    "event_backlog_high",
                    SEVERITY_WARNING,
                    lag.subscription,
                    f"subscription {lag.subscription} holds {lag.backlog} unacknowledged events; "
                    f"above {self._config.max_backlog} the oldest are discarded",
                    {"backlog": str(lag.backlog), "cap": str(self._config.max_backlog)},
                )
            elif lag.backlog < threshold / 2:
                self._alerted.discard(lag.subscription)
        trimmed = await self._store.trim()
        config = self._config
        discards = (
            (
                "events_lost",
                trimmed.lost,
                self._on_lost,
                "lost",
                config.max_backlog,
                "lost {count} unacknowledged events to its backlog cap",
            ),
            (
                "dead_letters_dropped",
                trimmed.dead_letters_dropped,
                self._on_dead_letters_dropped,
                "dropped",
                config.max_dead_letters,
                "discarded its {count} oldest dead letters to its dead-letter cap",
            ),
        )
        for kind, counts, count_metric, noun, cap, what in discards:
            for subscription, count in sorted(counts.items()):
                if count > 0:
                    count_metric(subscription, count)
                    await self._alert(
                        kind,
                        SEVERITY_CRITICAL,
                        subscription,
                        f"subscription {subscription} " + what.format(count=count),
                        {noun: str(count), "cap": str(cap)},
                    )
