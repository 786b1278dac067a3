"""The README's commands leave the working tree as they found it: the test
command's own setup (tools/setup.sh, which includes the run command's
tools/setup_run.sh) run in a fresh copy of this tree — its tracked and
unignored files, committed into a new repository, nothing installed — exits 0
and leaves `git status` clean (npm ci from complete lock files, no rewritten
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


def test_setup_leaves_the_tree_clean(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    _fresh_copy(tree)
    assert _git(tree, "status", "--porcelain") == ""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIVIFIED_", "VIRTUAL_ENV"))}
    setup = subprocess.run(["bash", "-c", "source tools/setup.sh && vivified proto-path && buf --version"],
                           cwd=tree, capture_output=True, text=True, env=env, timeout=900)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert str(tree / "proto") in setup.stdout.splitlines(), setup.stdout
    assert (tree / "node_modules" / ".bin" / "buf").exists()
    status = _git(tree, "status", "--porcelain", "--untracked-files=all")
    assert status == "", f"setup changed the working tree:\n{status}"


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
