"""`vivified create-plugin` end to end: the generated project's own pytest
(real `vivified core` processes through `vivified.sdk.testing.LocalCore`)
passes right after generation, with nothing installed; a changed plugin
passes its changed test (the time from create-plugin to that is measured and
printed); a broken handler makes the generated tests fail."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest

from support.processes import clean_env, run_vivified

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _create(parent: pathlib.Path, name: str, contract: str) -> pathlib.Path:
    created = run_vivified("create-plugin", name, "--contract", contract, "--dir", str(parent), "--json")
    assert created.returncode == 0, created.stderr
    report = json.loads(created.stdout)
    assert report["plugin_id"] == name and set(report["files"]) >= {
        "manifest.yaml",
        "pyproject.toml",
        "tests/test_plugin.py",
        f"{name.replace('-', '_')}/plugin.py",
    }
    return pathlib.Path(report["path"])


def _project_pytest(project: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """The generated project's tests, run from its directory with this venv's python (nothing installed)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )


@pytest.mark.parametrize("contract", ["communication", "vivified.directory.v1.DirectoryService"])
def test_the_generated_project_passes_its_own_tests(tmp_path: pathlib.Path, contract: str) -> None:
    project = _create(tmp_path, "hello-plugin", contract)
    validated = run_vivified("manifest", "validate", str(project / "manifest.yaml"))
    assert validated.returncode == 0, validated.stdout
    tested = _project_pytest(project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout
    source = (project / "hello_plugin" / "plugin.py").read_text()
    assert "NotImplementedError" not in source and "UNIMPLEMENTED" not in source


def test_a_changed_plugin_passes_its_changed_test_and_a_broken_one_fails(tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    project = _create(tmp_path, "my-mailer", "communication")
    plugin = project / "my_mailer" / "plugin.py"
    test = project / "tests" / "test_plugin.py"
    # The change a developer makes first: SendMessage reports the message delivered.
    source = plugin.read_text()
    changed = source.replace(
        "            message_id=request.message.message_id,\n        )",
        "            message_id=request.message.message_id,\n            status=pb.DELIVERY_STATUS_DELIVERED,\n        )",
        1,
    )
    assert changed != source
    plugin.write_text(changed)
    test.write_text(
        test.read_text().replace(
            "        assert isinstance(reply, pb.SendMessageResponse)\n",
            "        assert isinstance(reply, pb.SendMessageResponse)\n"
            "        assert reply.status == pb.DELIVERY_STATUS_DELIVERED\n",
            1,
        )
    )
    passed = _project_pytest(project)
    elapsed = time.monotonic() - started
    assert passed.returncode == 0, passed.stdout + passed.stderr
    print(f"create-plugin -> changed plugin's tests passing: {elapsed:.1f}s")

    # The generated tests can fail: a handler that breaks is caught through the core.
    plugin.write_text(
        changed.replace(
            "        self.served.append('GetMessageStatus')\n",
            "        self.served.append('GetMessageStatus')\n        raise RuntimeError('broken')\n",
            1,
        )
    )
    failed = _project_pytest(project)
    assert failed.returncode == 1, failed.stdout
    assert "1 failed, 1 passed" in failed.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("bad_name", "--contract", "communication"), "INVALID_PLUGIN_NAME"),
        (("good-name", "--contract", "vivified.nothing.v1.NopeService"), "UNKNOWN_CONTRACT"),
    ],
)
def test_create_plugin_refuses_bad_input(tmp_path: pathlib.Path, args: tuple[str, ...], reason: str) -> None:
    refused = run_vivified("create-plugin", *args, "--dir", str(tmp_path))
    assert refused.returncode == 1 and f"[{reason}]" in refused.stderr, refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_create_plugin_does_not_overwrite_a_project(tmp_path: pathlib.Path) -> None:
    project = _create(tmp_path, "taken", "storage")
    manifest = (project / "manifest.yaml").read_text()
    refused = run_vivified("create-plugin", "taken", "--contract", "identity", "--dir", str(tmp_path))
    assert refused.returncode == 1 and "[TARGET_EXISTS]" in refused.stderr, refused.stderr
    assert (project / "manifest.yaml").read_text() == manifest
