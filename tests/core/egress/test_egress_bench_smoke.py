"""CI smoke of `vivified bench egress` (P7): it runs, both paths fetch the
same body, and the ratio key is reported. Figures are not asserted."""

from __future__ import annotations

import json

import pytest

from vivified.bench._egress import run_egress_bench

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("https", [False, True])
async def test_egress_bench_smoke(https: bool) -> None:
    report = await run_egress_bench(rounds=30, warmup=3, https=https)
    data = json.loads(report.to_json())
    assert data["scenario"] == "egress"
    assert [row["rounds"] for row in data["rows"]] == [30, 30]
    assert all(row["p50_ms"] > 0 for row in data["rows"])
    assert data["ratios"]["P7.latency_p50"] > 0
    assert ("HTTPS" if https else "HTTP") in data["rows"][0]["path"]
