"""Measure the onboarding workflow's end-to-end latency under `vivified up`:
from running `vivified users create` to the welcome mail in
`<data-dir>/outbox/<n>.eml`, N times (default 20); prints the median and the
spread, both from the command's start and from its exit (the CLI's own
start-up, about a Python import, is in the first figure only).

    .venv/bin/python tools/onboarding_latency.py [--runs 20]

Everything runs on loopback in a temporary data dir and is stopped at the
end (by pid)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", args[0], "--data-dir", str(data), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def _ready(data: Path) -> bool:
    listed = _cli(data, "plugins", "list", "--json")
    if listed.returncode != 0:
        return False
    plugins = {p["plugin_id"]: p for p in json.loads(listed.stdout).get("plugins", [])}
    wanted = ("email-gateway", "user-management")
    return all(plugins.get(p, {}).get("health") == "PLUGIN_HEALTH_HEALTHY" for p in wanted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vivified-latency-") as tmp:
        data = Path(tmp) / "data"
        log = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed below
        up = subprocess.Popen(
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
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        try:
            _wait(lambda: (data / "run" / "core.json").exists(), 60, "the core")
            _wait(lambda: _ready(data), 120, "email-gateway and user-management to be healthy")
            outbox = data / "outbox"
            from_start, from_exit, in_core = [], [], []
            for n in range(1, args.runs + 1):
                mail = outbox / f"{n}.eml"
                started = time.monotonic()
                created = _cli(
                    data,
                    "users",
                    "create",
                    "--username",
                    f"person{n}",
                    "--email",
                    f"person{n}@example.com",
                    "--display-name",
                    f"Person {n}",
                    "--role",
                    "viewer",
                    "--json",
                )
                exited = time.monotonic()
                if created.returncode != 0:
                    raise SystemExit(created.stderr)
                _wait(mail.exists, 30, f"{mail}")
                done = time.monotonic()
                from_start.append(done - started)
                from_exit.append(done - exited)
                # Server side: the trace's first audit record (the core's UserCreated publish,
                # inside CreateUser) to the sink writing the file.
                trace = json.loads(created.stdout)["trace_id"]
                queried = _cli(data, "audit", "query", "--trace", trace, "--limit", "200", "--json")
                first = min(
                    dt.datetime.fromisoformat(r["record_time"].replace("Z", "+00:00"))
                    for r in json.loads(queried.stdout)["records"]
                )
                in_core.append(mail.stat().st_mtime - first.timestamp())
            print(f"runs: {args.runs}")
            print(
                f"users create start -> mail in outbox: median {statistics.median(from_start) * 1000:.0f} ms "
                f"(min {min(from_start) * 1000:.0f}, max {max(from_start) * 1000:.0f})"
            )
            print(
                f"first audit record of the trace -> mail file written: median {statistics.median(in_core) * 1000:.0f} ms "
                f"(min {min(in_core) * 1000:.0f}, max {max(in_core) * 1000:.0f})"
            )
            print(
                f"users create exit  -> mail in outbox: median {statistics.median(from_exit) * 1000:.0f} ms "
                f"(min {min(from_exit) * 1000:.0f}, max {max(from_exit) * 1000:.0f})"
            )
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
