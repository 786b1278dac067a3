"""The README's commands leave the working tree as they found it: the test
command's own setup (tools/setup.sh, which includes the run command's
tools/setup_run.sh) run in a fresh copy of this tree — its tracked and
unignored files, committed into a new repository, nothing installed, after
the run command's setup alone — exits 0 and leaves `git status` clean (npm ci from complete lock files, no rewritten
package-lock.json, nothing generated outside ignored paths)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _git(cwd: pathlib.Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _fresh_copy(target: pathlib.Path) -> None:
    """This tree as a fresh clone would have it (its current files, ignored ones left out)."""
    for rel in _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = ROOT / rel
        if not rel or not source.is_file():
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / rel)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fresh clone")


def _setup(tree: pathlib.Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIVIFIED_", "VIRTUAL_ENV"))}
    return subprocess.run(["bash", "-c", script], cwd=tree, capture_output=True, text=True, env=env, timeout=900)


def test_run_setup_installs_only_what_running_needs_and_test_setup_leaves_the_tree_clean(
    tmp_path: pathlib.Path,
) -> None:
    """First tools/up.sh's setup (tools/setup_run.sh): no apt, no dev extras, no buf; `vivified`
    works and the tree stays clean. Then, in the same copy (as a user who ran the platform and
    now runs the tests), the test command's setup (tools/setup.sh): it exits 0, brings buf and
    leaves the tree clean. (One copy for both: a second fresh install cost the suite ~35 s.)"""
    script = (ROOT / "tools" / "setup_run.sh").read_text()
    assert "apt-get" not in script and "sudo" not in script
    assert "source tools/setup_run.sh" in (ROOT / "tools" / "up.sh").read_text()
    assert "source tools/setup_run.sh" in (ROOT / "tools" / "setup.sh").read_text()
    tree = tmp_path / "tree"
    tree.mkdir()
    _fresh_copy(tree)
    assert _git(tree, "status", "--porcelain") == ""

    run_setup = _setup(tree, "source tools/setup_run.sh && vivified proto-path")
    assert run_setup.returncode == 0, run_setup.stdout + run_setup.stderr
    assert str(tree / "proto") in run_setup.stdout.splitlines(), run_setup.stdout
    listed = subprocess.run(
        [str(tree / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for dev_only in ("pytest==", "mypy==", "grpcio-tools==", "hypothesis==", "kubernetes-validate=="):
        assert dev_only not in listed, f"{dev_only} installed by the run setup"
    assert not (tree / "node_modules").exists(), "the run setup installed the buf toolchain"
    status = _git(tree, "status", "--porcelain", "--untracked-files=all")
    assert status == "", f"the run setup changed the working tree:\n{status}"

    test_setup = _setup(tree, "source tools/setup.sh && vivified proto-path && buf --version")
    assert test_setup.returncode == 0, test_setup.stdout + test_setup.stderr
    assert str(tree / "proto") in test_setup.stdout.splitlines(), test_setup.stdout
    assert (tree / "node_modules" / ".bin" / "buf").exists()
    status = _git(tree, "status", "--porcelain", "--untracked-files=all")
    assert status == "", f"the test setup changed the working tree:\n{status}"


def test_lock_file_holds_every_platforms_buf() -> None:
    """`npm ci` needs the lock file complete for every platform, or a machine of another kind
    would rewrite it: each optional @bufbuild/buf-* package buf declares is locked."""
    import json

    lock = json.loads((ROOT / "package-lock.json").read_text())
    packages = lock["packages"]
    declared = packages["node_modules/@bufbuild/buf"]["optionalDependencies"]
    assert len(declared) >= 7
    for name, version in declared.items():
        entry = packages.get(f"node_modules/{name}")
        assert entry is not None and entry["version"] == version, f"{name} {version} missing from package-lock.json"
        assert entry.get("integrity", "").startswith("sha512-")
