"""Bounded store calls: a timeout per operation and a breaker, so an unreachable
store fails publishes fast with UNAVAILABLE instead of hanging or dropping them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from vivified.core.clock import Clock
from vivified.core.errors import Unavailable, VivifiedError
from vivified.core.gateway import HALF_OPEN, CircuitBreakers

T = TypeVar("T")

REASON = "EVENT_STORE_UNAVAILABLE"
_TARGET = "event-store"
# Three consecutive failures open the breaker; it lets one probe through after
# a cooldown of one store timeout, so a dead store costs one timeout per cooldown,
# not one per publish.
_FAILURES = 3


class StoreGuard:
    """Runs store operations under `timeout` seconds and a circuit breaker.

    `failure_types` are the exceptions that mean "the store is unreachable";
    anything else (a domain error such as `FailedPrecondition`) passes through
    and counts as a successful round trip.
    """

    def __init__(
        self, clock: Clock, timeout: float, *, describe: str, failure_types: tuple[type[BaseException], ...]
    ) -> None:
        self._timeout = timeout
        self._describe = describe
        self._failure_types = failure_types
        self._breakers = CircuitBreakers(clock, failures=_FAILURES, cooldown_seconds=lambda: timeout)

    async def run(self, start: Callable[[], Awaitable[T]], *, extra_seconds: float = 0.0) -> T:
        """Start the operation (only if the breaker lets it through, so a refused
        operation is never executed behind the caller's back) and await it within
        the timeout (plus `extra_seconds` for a deliberate blocking wait); map
        unreachability to `Unavailable`."""
        allowed = self._breakers.allow(_TARGET)
        probe = allowed and self._breakers.state(_TARGET) == HALF_OPEN
        if not allowed:
            raise Unavailable(
                f"the event store ({self._describe}) failed repeatedly; retrying it after a short cooldown",
                reason=REASON,
            )
        try:
            result = await asyncio.wait_for(start(), self._timeout + extra_seconds)
        except TimeoutError:
            self._breakers.record(_TARGET, ok=False)
            raise Unavailable(
                f"the event store ({self._describe}) did not answer within {self._timeout:g}s", reason=REASON
            ) from None
        except self._failure_types as exc:
            self._breakers.record(_TARGET, ok=False)
            raise Unavailable(
                f"the event store ({self._describe}) is unreachable ({type(exc).__name__})", reason=REASON
            ) from None
        except VivifiedError:
            # A domain answer (e.g. a subscription mismatch) proves the store is reachable.
            self._breakers.record(_TARGET, ok=True)
            raise
        except asyncio.CancelledError:
            # The caller gave up (e.g. a blocked read woken by a nack): says
            # nothing about the store, unless it was the half-open probe, which
            # must not stay outstanding forever (the next comes after the cooldown).
            if probe:
                self._breakers.record(_TARGET, ok=False)
            raise
        except BaseException:
            self._breakers.record(_TARGET, ok=False)
            raise
        self._breakers.record(_TARGET, ok=True)
        return result
