"""`vivified up` from a checkout on a machine without Node.js: the Node plugin
(plugins/webhook_notifier) is skipped with one plain log line naming it and the
reason, and the core and the Python plugins run as usual."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from support.processes import clean_env, spawn, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SKIPPED = "vivified.plugins.webhook_notifier is a Node.js plugin but Node.js (`node`) is not on PATH; not started"


def test_up_without_node_skips_the_node_plugin_and_runs_the_rest(tmp_path: pathlib.Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    data, log_path = tmp_path / "data", tmp_path / "up.log"
    # No node anywhere on PATH; the Python plugins start with this interpreter's absolute path.
    up = spawn(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "up",
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "1",
        ],
        clean_env(PATH=str(empty_bin)),
        log_path,
    )
    try:
        deadline = time.monotonic() + 90
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert up.poll() is None, log_path.read_text()
            listed = subprocess.run(
                [sys.executable, "-m", "vivified.core.cli", "plugins", "--data-dir", str(data), "list", "--json"],
                capture_output=True,
                text=True,
                env=clean_env(),
            )
            if listed.returncode == 0:
                state = {p["plugin_id"]: p.get("health", "") for p in json.loads(listed.stdout).get("plugins", [])}
                if state.get("example-echo") == "PLUGIN_HEALTH_HEALTHY":
                    break
            time.sleep(0.5)
        assert state.get("example-echo") == "PLUGIN_HEALTH_HEALTHY", f"{state}\n{log_path.read_text()}"
        log = log_path.read_text()
        assert [line for line in log.splitlines() if SKIPPED in line and " ERROR " in line], log
        assert "webhook-notifier" not in state
        plugins_line = next(line for line in log.splitlines() if line.startswith("plugins: "))
        assert "webhook_notifier" not in plugins_line and "example_echo" in plugins_line
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGINT)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            code = stop_process(up)
    assert code == 0, log_path.read_text()
