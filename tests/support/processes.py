"""Start and stop real core and plugin processes on loopback, by pid."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CoreProcess:
    """A running `vivified core` and where it listens."""

    data_dir: pathlib.Path
    process: subprocess.Popen[bytes]
    listen_address: str = ""
    bootstrap_address: str = ""
    metrics_address: str = ""
    trust_domain: str = "vivified.local"
    log_path: pathlib.Path = field(default_factory=pathlib.Path)

    @property
    def operator_dir(self) -> pathlib.Path:
        return self.data_dir / "operator"

    @property
    def ca_pem(self) -> bytes:
        return (self.operator_dir / "ca.crt").read_bytes()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def core_view(local: Any) -> CoreProcess:
    """A `vivified.sdk.testing.LocalCore`'s core as a CoreProcess, for the helpers
    here and in support.clients (audit rows, operator channel, CLI); it has no
    Popen: LocalCore itself stops the process."""
    return CoreProcess(
        data_dir=local.data_dir,
        process=None,  # type: ignore[arg-type]
        listen_address=local.listen_address,
        bootstrap_address=local.bootstrap_address,
        trust_domain=local.trust_domain,
        log_path=local.log_path,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    env.update(extra)
    return env


def start_core(
    data_dir: pathlib.Path, *flags: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> CoreProcess:
    """Start `vivified core` on ephemeral loopback ports and wait until it serves."""
    data_dir.mkdir(parents=True, exist_ok=True)
    run_file = data_dir / "run" / "core.json"
    run_file.unlink(missing_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-core.log"
    args = [
        sys.executable,
        "-m",
        "vivified.core.cli",
        "core",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        *flags,
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - closed when the process is stopped
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env or clean_env())
    log.close()
    core = CoreProcess(data_dir=data_dir, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"core exited with {process.returncode}:\n{core.log()}")
        if run_file.exists():
            info = json.loads(run_file.read_text())
            core.listen_address = info["listen_address"]
            core.bootstrap_address = info["bootstrap_address"]
            core.metrics_address = info["metrics_address"]
            core.trust_domain = info["trust_domain"]
            return core
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"core did not start within {timeout}s:\n{core.log()}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM by pid, then SIGKILL if it does not stop in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def run_cli(core: CoreProcess, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a `vivified` CLI command against `core`'s data dir."""
    return run_vivified(*args[:1], "--data-dir", str(core.data_dir), *args[1:], timeout=timeout)


def run_vivified(
    *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
    )


@contextlib.contextmanager
def core_running(data_dir: pathlib.Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[CoreProcess]:
    core = start_core(data_dir, *flags, env=env)
    try:
        yield core
    finally:
        stop_process(core.process)


def spawn(args: Sequence[str], env: dict[str, str], log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()
