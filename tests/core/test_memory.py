"""The core's allocator policy keeps Argon2id's transient memory out of its RSS.

Each case runs in a fresh interpreter: hash passwords on four threads (the
hasher's concurrency), then read how much resident memory stayed behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, pathlib, sys
from concurrent.futures import ThreadPoolExecutor
from vivified.core.identity._config import PasswordParams
from vivified.core.identity._passwords import PasswordHasher
from vivified.core.memory import return_large_frees_to_os

def rss():
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

applied = return_large_frees_to_os() if sys.argv[1] == "on" else False
hasher = PasswordHasher(PasswordParams())
before = rss()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda _: hasher.hash_now("correct horse battery"), range(16)))
    print(json.dumps({"applied": applied, "grown": rss() - before}))
"""


def _grown(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's mallopt")
def test_hashing_memory_is_returned_to_the_os() -> None:
    on = _grown("on")
    assert on["applied"], "mallopt was not applied on this glibc"
    assert on["grown"] < 8 * 2**20, f"{on['grown']} bytes stayed resident after hashing"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's mallopt")
def test_without_the_policy_hashing_threads_keep_their_memory() -> None:
    # The control: what the policy prevents is real on this machine.
    off = _grown("off")
    assert off["grown"] > 19 * 2**20, f"only {off['grown']} bytes stayed: the probe no longer shows the problem"
