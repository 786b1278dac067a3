"""Per-principal rate limit: a token bucket per actor, bounded in number."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._outcome import Denied
from vivified.core.clock import Clock


@dataclass(frozen=True)
class RateLimitConfig:
    """Sustained calls per second and burst size for each principal."""

    rate_per_second: float = 500.0
    burst: int = 1000
    max_tracked_principals: int = 100_000

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0 or self.burst < 1:
            raise ValueError("the call rate must be positive and its burst at least 1")


class TokenBuckets:
    """Token buckets keyed by actor; least recently used keys are evicted.

    `config` is read at every take, so a changed rate or burst applies at once
    (a lowered burst caps the tokens a bucket holds)."""

    def __init__(self, config: Callable[[], RateLimitConfig], clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> bool:
        config = self._config()
        now = self._clock.monotonic()
        tokens, last = self._buckets.pop(key, (float(config.burst), now))
        tokens = min(float(config.burst), tokens + (now - last) * config.rate_per_second)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > config.max_tracked_principals:
            self._buckets.popitem(last=False)
        return allowed


class RateLimitLayer:
    """Refuses calls over the principal's rate with RESOURCE_EXHAUSTED."""

    def __init__(self, buckets: TokenBuckets) -> None:
        self._buckets = buckets

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        if self._buckets.take(call.actor):
            await proceed(call)
            return
        raise Denied(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "rate limit exceeded; retry later",
            reason="RATE_LIMITED",
            rule_id="rate-limit",
            domain="vivified.core",
        )
