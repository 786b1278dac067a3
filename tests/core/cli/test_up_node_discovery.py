"""How `vivified up` recognises a Node.js plugin directory, and why it skips one."""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import pytest

from vivified.core.cli._up import node_plugin


def _plugin_dir(tmp_path: pathlib.Path, *, main: str = "main.js", installed: bool = True) -> pathlib.Path:
    directory = tmp_path / "notifier"
    directory.mkdir()
    (directory / "manifest.yaml").write_text("id: notifier\n")
    (directory / "package.json").write_text(json.dumps({"main": main, "dependencies": {"@vivified/sdk": "file:x"}}))
    (directory / "main.js").write_text("")
    if installed:
        (directory / "node_modules").mkdir()
    return directory


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node on PATH")
def test_a_node_plugin_runs_its_package_main_with_node(tmp_path: pathlib.Path) -> None:
    directory = _plugin_dir(tmp_path)
    spec = node_plugin(directory, directory / "manifest.yaml")
    assert spec is not None and spec.argv() == (shutil.which("node"), str(directory / "main.js"))
    assert spec.module == "vivified.plugins.notifier"


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"installed": False}, "dependencies are not installed (run tools/setup.sh)"),
        ({"main": "missing.js"}, "missing.js does not exist"),
    ],
)
def test_a_node_plugin_that_cannot_run_is_skipped_saying_why(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, kwargs: dict[str, object], why: str
) -> None:
    directory = _plugin_dir(tmp_path, **kwargs)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="vivified.up"):
        assert node_plugin(directory, directory / "manifest.yaml") is None
    assert why in caplog.text and "not started" in caplog.text
