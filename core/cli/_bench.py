"""`vivified bench …`: runs the benchmark package as its own process.

The benchmark (`vivified.bench`, shipped in the same distribution) drives plugins
through the SDK, and the core never imports the SDK or a plugin, so the core's
CLI starts `python -m vivified.bench` by module name and passes every argument on."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        add_help=False,
        help="measure the platform; ratios are taken side by side in one run (vivified bench --help)",
    )
    bench.add_argument("rest", nargs=argparse.REMAINDER)


def run(args: Sequence[str]) -> int:
    """Run `python -m vivified.bench ARGS` with this interpreter; its exit status is ours."""
    return subprocess.call([sys.executable, "-m", "vivified.bench", *args])
