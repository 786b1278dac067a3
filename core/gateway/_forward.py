"""Forwarding one call to a target plugin, with the operator lane's
resilience: capped deadline, retries only when safe, jittered backoff, a
circuit breaker and a concurrency limit per target."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc

from vivified.core.chain import error_info
from vivified.core.clock import Clock
from vivified.core.contracts import ContractMethod
from vivified.core.errors import Unavailable, VivifiedError
from vivified.core.gateway._breaker import CircuitBreakers
from vivified.core.gateway._bulkhead import Bulkheads
from vivified.core.registry import ACTIVE, HEALTHY, INIT_FAILED, UNKNOWN, PluginConnector, PluginRecord

_DOMAIN = "vivified.gateway"
MAX_DEADLINE_CAP_SECONDS = 300.0
_BREAKER_FAILURES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class GatewayConfig:
    """Resilience settings of the operator lane."""

    default_deadline_seconds: float = 10.0
    """Deadline when the caller sets none."""
    max_deadline_seconds: float = 30.0
    """Caller deadlines are capped at this."""
    max_attempts: int = 3
    """Attempts for retryable calls (idempotent methods or an idempotency key)."""
    backoff_base_seconds: float = 0.05
    """First retry waits up to this (full jitter), doubling each time."""
    breaker_failures: int = 5
    """Consecutive failures that open a target's circuit."""
    breaker_cooldown_seconds: float = 5.0
    """Open time before one half-open probe is let through."""
    max_in_flight_per_target: int = 64
    """Concurrent calls per target; as many again may wait."""

    def __post_init__(self) -> None:
        if self.max_deadline_seconds > MAX_DEADLINE_CAP_SECONDS:
            raise ValueError(f"max_deadline_seconds may be at most {MAX_DEADLINE_CAP_SECONDS:g}")
        if not (self.default_deadline_seconds > 0 and self.max_deadline_seconds > 0):
            raise ValueError("operator-lane deadlines must be positive")
        if self.max_attempts < 1 or self.breaker_failures < 1 or self.max_in_flight_per_target < 1:
            raise ValueError("max_attempts, breaker_failures and max_in_flight_per_target must be at least 1")
        if self.breaker_cooldown_seconds < 0 or self.backoff_base_seconds < 0:
            raise ValueError("breaker cooldown and backoff must not be negative")


def answer_margin(timeout: float) -> float:
    """Time kept back from a call's deadline to refuse it and send the answer
    (audit record included) before the caller's own deadline fires."""
    return min(0.5, max(0.05, timeout * 0.2))


class TargetError(VivifiedError):
    """The target answered with an error; its code and reason pass through."""

    def __init__(self, err: grpc.aio.AioRpcError, attempts: int) -> None:
        self.attempts = attempts
        info = error_info(err)
        # Without a reason of the target's own: a forwarded call that ran out of
        # its (capped) deadline says so, as a call the caller's deadline ended does.
        bare = "DEADLINE_EXCEEDED" if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "TARGET_ERROR"
        reason = info.reason if info is not None and info.reason else bare
        domain = info.domain if info is not None and info.domain else _DOMAIN
        super().__init__(err.details() or err.code().name, reason=reason, domain=domain)
        self.code = err.code()


@dataclass(frozen=True)
class Forwarded:
    response: bytes
    attempts: int


class Forwarder:
    """Sends request bytes to a target's contract method and returns the reply bytes."""

    def __init__(
        self,
        *,
        config: Callable[[], GatewayConfig],
        lookup: Callable[[str], PluginRecord | None],
        connector: PluginConnector,
        clock: Clock,
        on_breaker: Callable[[str, str], None] = lambda target, state: None,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._current = config
        self._lookup = lookup
        self._connector = connector
        self._clock = clock
        fixed = config()
        self._breakers = CircuitBreakers(
            clock, failures=fixed.breaker_failures, cooldown_seconds=lambda: self._config.breaker_cooldown_seconds
        )
        self._bulkheads = Bulkheads(fixed.max_in_flight_per_target)
        self._on_breaker = on_breaker
        self._jitter = jitter
        self._sleep = sleep
        # Per target: its channel and the callables made on it, one per method
        # path, so a call builds no multicallable of its own. A new channel
        # (the target moved) starts a new set.
        self._callables: dict[
            str, tuple[grpc.aio.Channel, dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]]
        ] = {}

    @property
    def _config(self) -> GatewayConfig:
        # Read at each use: the deadline cap and breaker cooldown may change while the core runs.
        return self._current()

    def _routable(self, target: str) -> PluginRecord:
        record = self._lookup(target)
        why = None
        if record is None:
            why = "is not registered"
        elif record.status != ACTIVE:
            why = f"is {record.status}"
        elif record.health in (UNKNOWN, INIT_FAILED):
            why = "has not completed Init yet (the core routes nothing to a plugin before its Init succeeds)"
        elif record.health != HEALTHY:
            why = "is not healthy (missed heartbeats)"
        elif not self._breakers.allow(target):
            why = "has failed repeatedly; its circuit is open"
        if why is not None or record is None:
            raise Unavailable(f"target plugin {target!r} {why}", reason="TARGET_UNAVAILABLE", domain=_DOMAIN)
        return record

    def _callable(self, record: PluginRecord, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        channel = self._connector.channel(record)
        cached = self._callables.get(record.plugin_id)
        if cached is None or cached[0] is not channel:
            cached = self._callables[record.plugin_id] = (channel, {})
        call = cached[1].get(path)
        if call is None:
            call = cached[1][path] = channel.unary_unary(path)
        return call

    def _record(self, target: str, ok: bool) -> None:
        before = self._breakers.state(target)
        after = self._breakers.record(target, ok=ok)
        if after != before:
            self._on_breaker(target, after)

    def timeout_for(self, remaining: float | None) -> float:
        """The caller's remaining deadline, or the default, capped at the maximum."""
        wanted = self._config.default_deadline_seconds if remaining is None else remaining
        return max(0.0, min(wanted, self._config.max_deadline_seconds))

    async def forward(
        self,
        target: str,
        method: ContractMethod,
        request: bytes,
        *,
        timeout: float,
        retryable: bool,
        metadata: Sequence[tuple[str, str]],
    ) -> Forwarded:
        record = self._routable(target)
        deadline = self._clock.monotonic() + timeout
        attempts = self._config.max_attempts if retryable else 1
        attempt = 1
        headers = grpc.aio.Metadata(*metadata)
        async with self._bulkheads.slot(target, timeout - answer_margin(timeout)):
            while True:
                remaining = deadline - self._clock.monotonic()
                call = self._callable(record, method.path)
                try:
                    response = await call(request, timeout=max(remaining, 0.001), metadata=headers)
                except grpc.aio.AioRpcError as err:
                    self._record(target, ok=err.code() not in _BREAKER_FAILURES)
                    retry = err.code() == grpc.StatusCode.UNAVAILABLE and attempt < attempts
                    backoff = self._config.backoff_base_seconds * (2 ** (attempt - 1)) * self._jitter()
                    if not retry or self._clock.monotonic() + backoff >= deadline:
                        raise TargetError(err, attempt) from None
                    await self._sleep(backoff)
                    record = self._routable(target)
                    attempt += 1
                    continue
                self._record(target, ok=True)
                return Forwarded(response, attempt)

    def breaker_states(self) -> dict[str, str]:
        return self._breakers.states()
