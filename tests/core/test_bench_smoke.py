"""`vivified bench` scenarios run and report the docs/performance.md keys (a smoke:
figures are not asserted, they vary with the machine)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil

import pytest

from support.processes import run_vivified
from vivified.bench._platform import Platform

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
    assert [row["path"] for row in report["rows"]][:3] == [  # type: ignore[index, union-attr]
        "chain + SQLite audit, audit_durability=group (default)",
        "chain + SQLite audit, audit_durability=fsync",
        "chain, audit sink in memory",
    ]
    assert all(value > 0 for value in ratios.values())
    assert report["machine"]


def test_bench_invoke_reports_p1() -> None:
    report = _report("invoke", "--rounds", "1", "--calls", "20")
    ratios = report["ratios"]
    assert isinstance(ratios, dict) and set(ratios) >= {
        "P1.latency_p50",
        "P1.throughput",
        "P14.latency_p50",
        "tracing.latency_p50",
        "tracing.throughput",
    }
    rows = report["rows"]
    assert [row["path"] for row in rows] == [  # type: ignore[index, union-attr]
        "direct mTLS to plugin",
        "brokered Invoke",
        "brokered typed call",
        "brokered Invoke, audit_durability=fsync",
        "brokered Invoke, traced (always_on, OTLP export)",
    ]
    assert rows[-1]["spans_received"] > 0  # type: ignore[index]  # the traced core really exported


def test_bench_events_reports_p3_to_p6_p12_and_p13() -> None:
    assert shutil.which("redis-server"), "CI installs redis-server (tools/setup.sh); P5 needs it"
    report = _report("events", "--events", "100", "--rounds", "1")
    assert report["scenario"] == "events"
    ratios = report["ratios"]
    assert isinstance(ratios, dict)
    assert set(ratios) == {
        "P3.throughput",
        "P4.latency_p50",
        "P5.throughput",
        "P6.throughput",
        "P12.throughput",
        "P13.tail",
    }
    assert all(isinstance(value, float) and value > 0 for value in ratios.values())
    backends = [row.get("backend") for row in report["rows"]]  # type: ignore[union-attr]
    assert "redis (AOF, appendfsync always)" in backends


def test_bench_events_skips_redis_with_a_note_when_redis_server_is_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert asyncio.run(Platform(tmp_path).start_redis()) is None


def test_bench_rejects_tiny_runs() -> None:
    result = run_vivified("bench", "chain", "--calls", "5")
    assert result.returncode == 2 and "at least 1000" in result.stdout
    result = run_vivified("bench", "events", "--events", "10")
    assert result.returncode == 2 and "at least 50" in result.stdout


def test_bench_storage_reports_core_and_in_process_ratios_on_both_backends() -> None:
    report = _report("storage", "--objects", "2", "--rounds", "1")
    assert report["scenario"] == "storage"
    ratios = report["ratios"]
    assert isinstance(ratios, dict)
    cases = [(b, s) for b in ("directory", "database") for s in ("1MiB", "64KiB")]
    assert set(ratios) == (
        {"P10.throughput", "P10.database_throughput"}
        | {f"storage.{b}.{s}.{op}" for b, s in cases for op in ("put", "get", "put_get")}
        | {f"storage.in_process.{b}.{s}.{op}" for b, s in cases for op in ("put", "get")}
    )
    assert all(isinstance(value, float) and value > 0 for value in ratios.values())
    assert ratios["P10.throughput"] == ratios["storage.directory.1MiB.put_get"]
    rows = report["rows"]
    assert isinstance(rows, list)
    through_core = [r for r in rows if r["section"].startswith("through a core")]
    assert [(r["backend"], r["size"], r["objects"]) for r in through_core] == [(b, s, 2) for b, s in cases]
    assert all(
        r[f"{who}_{op}_mib_s"] > 0 for r in through_core for who in ("core", "file") for op in ("put", "get", "put_get")
    )
    assert [(r["backend"], r["size"]) for r in rows if r["section"].startswith("in process")] == cases


def test_bench_rest_reports_the_rest_vs_grpc_list_plugins_ratio() -> None:
    result = run_vivified("bench", "rest", "--rounds", "1", "--calls", "10", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bench rest: round 1/1" in result.stderr  # progress on stderr, the report alone on stdout
    report = json.loads(result.stdout.strip())
    assert report["scenario"] == "rest"
    assert set(report["ratios"]) == {"rest.list_plugins.latency_p50"}
    assert report["ratios"]["rest.list_plugins.latency_p50"] > 0
    assert [(row["path"], row["calls"]) for row in report["rows"]] == [
        ("direct gRPC, bootstrap port, bearer token", 10),
        ("REST through Envoy (grpc_json_transcoder), bearer token", 10),
    ]
