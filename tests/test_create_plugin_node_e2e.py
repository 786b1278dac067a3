"""`vivified create-plugin NAME --lang node` end to end: the generated
TypeScript project installs from the local SDK path alone (`npm install
--offline`: the SDK by path, the compiler from npm's cache that tools/setup.sh
filled), its own `node --test` tests pass right after generation and fail when
a handler breaks, and `vivified up --plugin DIR` runs it with `node` beside the
bundled plugins: approved by `up`, registered, healthy, and answering a
brokered call through the core (audited) with its generated handler."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from support.processes import clean_env, run_vivified
from support.up_plugin import brokered_status_call, up_serving

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npm") is None, reason="needs Node.js and npm (tools/setup.sh)"),
]
PLUGIN = "node-hello"


def create_node_plugin(parent: pathlib.Path, name: str, contract: str) -> pathlib.Path:
    """Generate and install the project (offline: the SDK from its path, the rest from npm's cache)."""
    created = run_vivified(
        "create-plugin", name, "--contract", contract, "--lang", "node", "--dir", str(parent), "--json"
    )
    assert created.returncode == 0, created.stderr
    report = json.loads(created.stdout)
    assert report["lang"] == "node" and set(report["files"]) >= {
        "manifest.yaml",
        "package.json",
        "src/plugin.ts",
        "src/main.ts",
        "test/plugin.test.ts",
    }
    project = pathlib.Path(report["path"])
    installed = subprocess.run(
        ["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return project


def npm_test(project: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npm", "test"], cwd=project, capture_output=True, text=True, timeout=300, env=clean_env())


def test_the_generated_node_project_passes_its_tests_and_a_broken_handler_fails(tmp_path: pathlib.Path) -> None:
    project = create_node_plugin(tmp_path, "node-dir", "vivified.directory.v1.DirectoryService")
    validated = run_vivified("manifest", "validate", str(project / "manifest.yaml"))
    assert validated.returncode == 0, validated.stdout
    source = (project / "src" / "plugin.ts").read_text()
    assert "UNIMPLEMENTED" not in source and "not implemented" not in source
    passed = npm_test(project)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "# pass 3" in passed.stdout and "# fail 0" in passed.stdout
    # The generated tests can fail: a handler that drops what it echoes is caught.
    broken = source.replace("return { userId: request.userId };", 'return { userId: "" };', 1)
    assert broken != source
    (project / "src" / "plugin.ts").write_text(broken)
    failed = npm_test(project)
    assert failed.returncode != 0 and "# fail 1" in failed.stdout, failed.stdout


@pytest.mark.asyncio
async def test_up_runs_the_generated_node_plugin(tmp_path: pathlib.Path) -> None:
    project = create_node_plugin(tmp_path / "src", PLUGIN, "communication")
    tested = npm_test(project)  # also builds dist/, which `node` runs
    assert tested.returncode == 0, tested.stdout + tested.stderr
    async with up_serving(project, tmp_path, PLUGIN) as core:
        await brokered_status_call(core, "node-caller", PLUGIN, "m-7")


def test_up_refuses_a_node_project_that_is_not_built(tmp_path: pathlib.Path) -> None:
    created = run_vivified(
        "create-plugin", "unbuilt", "--contract", "storage", "--lang", "node", "--dir", str(tmp_path)
    )
    assert created.returncode == 0, created.stderr
    refused = run_vivified(
        "up", "--data-dir", str(tmp_path / "data"), "--plugin", str(tmp_path / "unbuilt"), timeout=60
    )
    assert refused.returncode == 1
    assert "[PLUGIN_NODE_UNRUNNABLE]" in refused.stderr, refused.stderr
    assert not (tmp_path / "data" / "run" / "core.json").exists()
