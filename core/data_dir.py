"""The core's data dir: its default, and where a running core describes itself in it
(`<data-dir>/run/core.json`: its addresses and trust domain, written once it serves and
removed when it stops; read by the CLI). Kept apart so a CLI command can find a running
core without importing the core."""

from __future__ import annotations

import pathlib

DEFAULT_DATA_DIR = pathlib.Path(".vivified")


def run_file(data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / "run" / "core.json"
