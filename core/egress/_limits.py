"""Per-plugin egress limits: a token bucket for the rate and a counter for
fetches in flight. Over either limit a fetch is refused at once, never
queued, so one busy plugin cannot hold the proxy's capacity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vivified.core.chain import RateLimitConfig, TokenBuckets
from vivified.core.clock import Clock
from vivified.core.egress._errors import exhausted


class PluginLimits:
    def __init__(self, *, rate_per_second: float, burst: int, concurrency: int, clock: Clock) -> None:
        limit = RateLimitConfig(rate_per_second=rate_per_second, burst=burst)
        self._buckets = TokenBuckets(lambda: limit, clock)
        self._concurrency = concurrency
        self._in_flight: dict[str, int] = {}

    def in_flight(self, plugin_id: str) -> int:
        return self._in_flight.get(plugin_id, 0)

    @contextmanager
    def slot(self, plugin_id: str) -> Iterator[None]:
        """Hold one of the plugin's fetch slots for the duration of the block."""
        if self.in_flight(plugin_id) >= self._concurrency:
            raise exhausted(
                f"{self._concurrency} fetches of this plugin are already in flight", "EGRESS_BUSY", "egress-concurrency"
            )
        if not self._buckets.take(plugin_id):
            raise exhausted("egress rate limit exceeded; retry later", "RATE_LIMITED", "egress-rate-limit")
        self._in_flight[plugin_id] = self.in_flight(plugin_id) + 1
        try:
            yield
        finally:
            left = self._in_flight[plugin_id] - 1
            if left:
                self._in_flight[plugin_id] = left
            else:
                del self._in_flight[plugin_id]
