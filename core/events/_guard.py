"""Bounded store calls: a timeout per operation and a breaker, so an unreachable
store fails publishes fast with UNAVAILABLE instead of hanging or dropping them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from vivified.core.clock import Clock
from vivified.core.errors import Unavailable, VivifiedError
from vivified.core.gateway._breaker import CircuitBreakers

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
        self._breakers = CircuitBreakers(clock, failures=_FAILURES, cooldown_seconds=timeout)

    async def run(self, operation: Awaitable[T], *, extra_seconds: float = 0.0) -> T:
        """Await `operation` within the timeout (plus `extra_seconds` for a
        deliberate blocking wait); map unreachability to `Unavailable`."""
        if not self._breakers.allow(_TARGET):
            if asyncio.iscoroutine(operation):
                operation.close()
            raise Unavailable(
                f"the event store ({self._describe}) failed repeatedly; retrying it after a short cooldown",
                reason=REASON,
            )
        try:
            result = await asyncio.wait_for(operation, self._timeout + extra_seconds)
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
        except BaseException:
            # Cancellation or an unexpected error: never leave a half-open probe
            # outstanding forever; the next probe comes after the cooldown.
            self._breakers.record(_TARGET, ok=False)
            raise
        self._breakers.record(_TARGET, ok=True)
        return result
