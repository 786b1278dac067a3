"""`vivified bench` scenarios run and report the PERFORMANCE.md keys (a smoke:
figures are not asserted, they vary with the machine)."""

from __future__ import annotations

import json

import pytest

from support.processes import run_vivified

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _report(*args: str) -> dict[str, object]:
    result = run_vivified("bench", *args, "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_bench_chain_reports_p2_and_p8() -> None:
    report = _report("chain", "--calls", "1000")
    assert report["scenario"] == "chain"
    ratios = report["ratios"]
    assert isinstance(ratios, dict) and set(ratios) >= {"P2.chain_cpu_us", "P8.growth"}
    assert all(value > 0 for value in ratios.values())
    assert report["machine"]


def test_bench_invoke_reports_p1() -> None:
    report = _report("invoke", "--rounds", "1", "--calls", "20")
    ratios = report["ratios"]
    assert isinstance(ratios, dict) and set(ratios) >= {"P1.latency_p50", "P1.throughput"}
    assert [row["path"] for row in report["rows"]] == [  # type: ignore[index, union-attr]
        "direct mTLS to plugin", "brokered Invoke", "brokered typed call"
    ]


def test_bench_rejects_tiny_runs() -> None:
    result = run_vivified("bench", "chain", "--calls", "5")
    assert result.returncode == 2 and "at least 1000" in result.stdout
