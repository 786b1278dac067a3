"""`vivified up --plugin DIR` runs a plugin project from outside the package
(as `vivified create-plugin` writes it) next to the bundled plugins: approved
by `up` as the operator (one audit record), registered, healthy, and answering
through the core's operator lane with its generated code."""

from __future__ import annotations

import pathlib

import pytest

from support.processes import run_vivified
from support.up_plugin import brokered_status_call, up_serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PLUGIN = "outside-plugin"


@pytest.mark.asyncio
async def test_up_runs_a_plugin_project_given_with_plugin(tmp_path: pathlib.Path) -> None:
    created = run_vivified("create-plugin", PLUGIN, "--contract", "communication", "--dir", str(tmp_path / "src"))
    assert created.returncode == 0, created.stderr
    project = tmp_path / "src" / PLUGIN
    async with up_serving(project, tmp_path, PLUGIN) as core:
        assert f"started {PLUGIN.replace('-', '_')}" in core.log_path.read_text()
        await brokered_status_call(core, "outside-caller", PLUGIN, "m-9")


def test_up_refuses_a_plugin_dir_without_a_manifest(tmp_path: pathlib.Path) -> None:
    refused = run_vivified("up", "--data-dir", str(tmp_path / "data"), "--plugin", str(tmp_path), timeout=60)
    assert refused.returncode == 1
    assert "no manifest.yaml there [PLUGIN_MANIFEST_MISSING]" in refused.stderr, refused.stderr
    assert not (tmp_path / "data" / "run" / "core.json").exists()


def test_up_refuses_a_plugin_dir_without_a_module(tmp_path: pathlib.Path) -> None:
    (tmp_path / "manifest.yaml").write_text("id: x\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    refused = run_vivified("up", "--data-dir", str(tmp_path / "data"), "--plugin", str(tmp_path), timeout=60)
    assert refused.returncode == 1 and "[PLUGIN_MODULE_MISSING]" in refused.stderr, refused.stderr
