"""A circuit breaker per target plugin: open after consecutive failures, one
half-open probe after a cooldown, closed again on success."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vivified.core.clock import Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class _State:
    failures: int = 0
    opened_at: float = 0.0
    state: str = CLOSED
    probing: bool = False


class CircuitBreakers:
    """Breaker state for every target, keyed by plugin id."""

    def __init__(self, clock: Clock, *, failures: int, cooldown_seconds: Callable[[], float]) -> None:
        """`cooldown_seconds` is read whenever an open circuit is checked, so a
        changed cooldown applies to circuits already open."""
        self._clock = clock
        self._threshold = failures
        self._cooldown = cooldown_seconds
        self._targets: dict[str, _State] = {}

    def state(self, target: str) -> str:
        return self._targets.get(target, _State()).state

    def allow(self, target: str) -> bool:
        """May a call go to `target` now? In half-open, only one probe may."""
        entry = self._targets.setdefault(target, _State())
        if entry.state == OPEN and self._clock.monotonic() - entry.opened_at >= self._cooldown():
            entry.state, entry.probing = HALF_OPEN, False
        if entry.state == CLOSED:
            return True
        if entry.state == HALF_OPEN and not entry.probing:
            entry.probing = True
            return True
        return False

    def record(self, target: str, *, ok: bool) -> str:
        """Record a call's outcome; returns the new state."""
        entry = self._targets.setdefault(target, _State())
        if ok:
            entry.failures, entry.state, entry.probing = 0, CLOSED, False
            return CLOSED
        entry.failures += 1
        if entry.state == HALF_OPEN or entry.failures >= self._threshold:
            entry.state, entry.opened_at, entry.probing = OPEN, self._clock.monotonic(), False
        return entry.state

    def states(self) -> dict[str, str]:
        return {target: entry.state for target, entry in self._targets.items()}
