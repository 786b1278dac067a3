"""Shared fixtures: a real core process per test module that needs one."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from support.processes import CoreProcess, core_running


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """A core with a short heartbeat interval, shared by one test module."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("core") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--leaf-ttl", "600") as running:
        yield running
