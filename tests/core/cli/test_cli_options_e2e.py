"""The real `vivified` command (its installed console script, in a subprocess):
a command group's options are accepted after its verbs as well as before
them, with the same result, and `vivified --version` names the installed
package's version."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import subprocess
import sys

import pytest

from support.clients import admitted_plugin
from support.processes import clean_env, core_running

pytestmark = pytest.mark.e2e

VIVIFIED = pathlib.Path(sys.executable).parent / "vivified"


def vivified(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VIVIFIED), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=clean_env(), check=False
    )


def test_version_prints_the_installed_package_version(tmp_path: pathlib.Path) -> None:
    shown = vivified("--version", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"vivified {importlib.metadata.version('vivified')}"


@pytest.mark.asyncio
async def test_group_options_after_the_verb_act_as_before_it(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    # Run from a directory without ./.vivified: only the --data-dir given finds the core's files.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with core_running(data) as core:
        await admitted_plugin(core, "options-demo")
        # Client options (--data-dir, --core) and --json on a running core, over mTLS.
        before = vivified(
            "plugins", "--data-dir", str(data), "--core", core.listen_address, "list", "--json", cwd=elsewhere
        )
        after = vivified(
            "plugins", "list", "--json", "--data-dir", str(data), "--core", core.listen_address, cwd=elsewhere
        )
        for result in (before, after):
            assert result.returncode == 0, result.stdout + result.stderr
        listed = [{p["plugin_id"]: p["status"] for p in json.loads(r.stdout)["plugins"]} for r in (before, after)]
        assert listed[0] == listed[1] and "options-demo" in listed[0]

        # A group option given only after a nested verb; -v (a top-level option) after the verbs too.
        nested_before = vivified("config", "core", "--data-dir", str(data), "--json", "list", cwd=elsewhere)
        nested_after = vivified("config", "core", "list", "--json", "-v", "--data-dir", str(data), cwd=elsewhere)
        for result in (nested_before, nested_after):
            assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(nested_before.stdout) == json.loads(nested_after.stdout)

    # The core stopped cleanly: `audit verify --data-dir X` (the form that was refused) checks X's log.
    verified_after = vivified("audit", "verify", "--data-dir", str(data), "--json", cwd=elsewhere)
    verified_before = vivified("audit", "--data-dir", str(data), "verify", "--json", cwd=elsewhere)
    assert verified_after.returncode == 0, verified_after.stdout + verified_after.stderr
    assert verified_after.stdout == verified_before.stdout
    result = json.loads(verified_after.stdout)
    assert result["ok"] is True and result["count"] > 0

    # Without the option the command looks in ./.vivified, which is not there: the option was read.
    missing = vivified("audit", "verify", "--json", cwd=elsewhere)
    assert missing.returncode == 1 and "no audit database" in missing.stdout


def test_an_option_unknown_to_the_command_is_still_refused(tmp_path: pathlib.Path) -> None:
    refused = vivified("audit", "verify", "--core", "127.0.0.1:1", cwd=tmp_path)
    assert refused.returncode == 2
    assert "unrecognized arguments: --core" in refused.stderr
