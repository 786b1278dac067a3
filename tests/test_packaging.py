"""The distribution is complete and the generated code is current."""

from __future__ import annotations

import filecmp
import pathlib
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from packages import ROOTS, packages  # noqa: E402

pytestmark = pytest.mark.slow


def test_pyproject_lists_every_package() -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == packages(ROOT), "run `python tools/packages.py` and update pyproject.toml"


def _expected_members() -> set[str]:
    expected = set()
    for name, rel in ROOTS.items():
        base = ROOT / rel
        prefix = name.replace(".", "/")
        for path in base.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            # A Node.js plugin (plugins/<name>/package.json) is not part of the Python distribution.
            if any((parent / "package.json").is_file() for parent in path.parents if base in parent.parents):
                continue
            inner = path.relative_to(base).parts
            if name == "vivified" and inner and inner[0] in {n.split(".")[1] for n in ROOTS if "." in n}:
                continue
            if path.suffix in {".py", ".pyi", ".json", ".yaml"} and path.name != "py.typed":
                expected.add("/".join((prefix, *inner)))
    return expected


def test_wheel_contains_every_module(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("vivified-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
    missing = sorted(_expected_members() - members)
    assert not missing, f"missing from the wheel: {missing[:20]}"
    assert "vivified/core/policy/rules.json" in members
    assert "vivified/plugins/example_echo/manifest.yaml" in members
    # PEP 561 marker, and the contracts for other languages and grpcurl (`vivified proto-path`).
    assert "vivified/py.typed" in members
    assert {
        "vivified/proto/grpc/health/v1/health.proto",
        "vivified/proto/vivified/events/v1/canonical.proto",
    } <= members
    # create-plugin's templates are package data.
    assert {
        f"vivified/core/cli/templates/plugin/{n}.tmpl" for n in ("manifest.yaml", "plugin.py", "test_plugin.py")
    } <= members
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in members if n.endswith("entry_points.txt"))
        assert "vivified = vivified.core.cli:main" in archive.read(entry_points).decode()


def test_generated_code_is_current(tmp_path: pathlib.Path) -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf is not installed: run `bash tools/setup.sh` (npm ci)"
    subprocess.run([str(buf), "generate", "-o", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    # The TypeScript types (gen/ts, protoc-gen-es) come from their own template.
    subprocess.run(
        [str(buf), "generate", "--template", "buf.gen.ts.yaml", "-o", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fresh, committed = tmp_path / "gen", ROOT / "gen"
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    committed_files = {
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file()
        and p.name not in ("__init__.py", "py.typed")
        and "__pycache__" not in p.parts
        and p.relative_to(committed).as_posix() != "ts/package.json"
    }
    assert fresh_files == committed_files, f"gen/ differs in files: {sorted(fresh_files ^ committed_files)[:10]}"
    stale = [str(p) for p in sorted(fresh_files) if not filecmp.cmp(fresh / p, committed / p, shallow=False)]
    assert not stale, f"stale generated files (run buf generate): {stale}"
    shutil.rmtree(tmp_path / "gen")
