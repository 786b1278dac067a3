"""Per-principal concurrency caps: open streams and unary calls in flight.

The HTTP/2 stream limit (`grpc.max_concurrent_streams`) bounds one connection;
a principal may open many connections, so the cap that protects neighbours is
counted per principal (`Call.actor`: a plugin is one key whatever connection or
certificate it calls with). A call takes a slot before policy and gives it back
when it ends, however it ends: normally, with an error, or cancelled by the
client (the slot is released in a `finally`, which runs when grpc.aio cancels
the handler's task). Beyond the cap the call is refused with
RESOURCE_EXHAUSTED, reason `STREAM_LIMIT` or `CALL_LIMIT` and rule id
`concurrency-streams` / `concurrency-calls`, audited once like every denial.

Streaming calls (Subscribe, PublishStream, WatchMyConfig, StreamFetch, …) and
unary calls have separate caps, so a plugin holding its streams can still
heartbeat and publish. Both default to 256, the HTTP/2 stream limit of one
connection (`grpc.max_concurrent_streams` in `vivified.core.server`): one
connection is never cut short by the per-principal cap, and opening more
connections no longer multiplies what a principal may hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._outcome import Denied

STREAM_RULE = "concurrency-streams"
CALL_RULE = "concurrency-calls"


@dataclass(frozen=True)
class ConcurrencyConfig:
    """How many calls one principal may have open at once, over all its connections."""

    max_streams: int = 256
    """Open streaming calls per principal."""
    max_calls: int = 256
    """Unary calls in flight per principal."""

    def __post_init__(self) -> None:
        if self.max_streams < 1 or self.max_calls < 1:
            raise ValueError("the concurrent stream and call caps must be at least 1")


@dataclass(frozen=True)
class InFlight:
    """Open streams and unary calls in flight, now and at most since start."""

    streams: int = 0
    calls: int = 0
    peak_streams: int = 0
    peak_calls: int = 0


class ConcurrencyLimits:
    """Slots in use per principal. `config` is read at every acquire (the caps
    are fixed at start, like the other caps a plugin could exhaust the core
    with, but a test or benchmark may pass any getter).
    A principal with nothing open has no entry, so the table holds only
    principals with calls open. Totals over all principals and their highest
    values since start are kept for metrics."""

    def __init__(self, config: Callable[[], ConcurrencyConfig]) -> None:
        self._config = config
        self._open: dict[tuple[str, bool], int] = {}
        self._totals = {True: 0, False: 0}
        self._peaks = {True: 0, False: 0}

    def acquire(self, key: str, streaming: bool) -> bool:
        config = self._config()
        cap = config.max_streams if streaming else config.max_calls
        slot = (key, streaming)
        held = self._open.get(slot, 0)
        if held >= cap:
            return False
        self._open[slot] = held + 1
        total = self._totals[streaming] = self._totals[streaming] + 1
        if total > self._peaks[streaming]:
            self._peaks[streaming] = total
        return True

    def release(self, key: str, streaming: bool) -> None:
        slot = (key, streaming)
        held = self._open.get(slot, 0)
        if held <= 0:
            return
        self._totals[streaming] -= 1
        if held > 1:
            self._open[slot] = held - 1
        else:
            del self._open[slot]

    def of(self, key: str) -> InFlight:
        """What `key` (a `Call.actor`) has open now."""
        return InFlight(streams=self._open.get((key, True), 0), calls=self._open.get((key, False), 0))

    def totals(self) -> InFlight:
        """Over every principal: open now, and the most open at once since start."""
        return InFlight(self._totals[True], self._totals[False], self._peaks[True], self._peaks[False])


class ConcurrencyLayer:
    """Holds a slot for the call's principal while the call runs; refuses
    with RESOURCE_EXHAUSTED when the principal has none left."""

    def __init__(self, limits: ConcurrencyLimits) -> None:
        self._limits = limits

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        key, streaming = call.actor, call.streaming
        if not self._limits.acquire(key, streaming):
            what = "streams open" if streaming else "calls in flight"
            raise Denied(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many concurrent {what} for {key}; close some or retry later",
                reason="STREAM_LIMIT" if streaming else "CALL_LIMIT",
                rule_id=STREAM_RULE if streaming else CALL_RULE,
                domain="vivified.core",
            )
        try:
            await proceed(call)
        finally:
            self._limits.release(key, streaming)
