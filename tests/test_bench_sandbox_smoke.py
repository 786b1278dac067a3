"""`vivified bench sandbox` runs end to end (a core with plugin sockets, the echo
plugin over TCP and its sandboxed copy over its Unix socket) and reports both
paths and their ratio; the figure itself is reported, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e]


def test_bench_sandbox_reports_both_paths_and_the_ratio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "bench", "sandbox", "--rounds", "1", "--calls", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["scenario"] == "sandbox"
    assert [row["path"] for row in report["rows"]] == [
        "brokered Invoke, plugin over loopback TCP",
        "brokered Invoke, sandboxed plugin over its Unix socket",
    ]
    assert all(row["p50_ms"] > 0 for row in report["rows"])
    assert report["ratios"]["sandbox_unix_vs_tcp.latency_p50"] > 0
