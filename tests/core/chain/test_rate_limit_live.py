"""The per-principal token buckets read their rate at every take, so a changed
call rate applies to the next call: a lowered burst caps the tokens a bucket
already holds, a raised rate refills faster from then on."""

from __future__ import annotations

from vivified.core.chain import RateLimitConfig, TokenBuckets
from vivified.core.clock import ManualClock


def test_buckets_follow_a_changed_rate() -> None:
    clock = ManualClock()
    current = [RateLimitConfig(rate_per_second=500.0, burst=1000)]
    buckets = TokenBuckets(lambda: current[0], clock)
    assert all(buckets.take("user:a") for _ in range(20))

    current[0] = RateLimitConfig(rate_per_second=1.0, burst=2)
    assert [buckets.take("user:a") for _ in range(3)] == [True, True, False]  # 980 tokens capped at 2
    assert buckets.take("user:b") and buckets.take("user:b") and not buckets.take("user:b")  # new buckets too
    clock.advance(1.0)
    assert buckets.take("user:a") and not buckets.take("user:a")  # refilled at 1/s

    current[0] = RateLimitConfig(rate_per_second=500.0, burst=1000)
    clock.advance(0.1)
    assert all(buckets.take("user:a") for _ in range(40))  # 50 tokens at the restored rate
