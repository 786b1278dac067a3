"""Runs mypy --strict (configured in pyproject's [tool.mypy]) on core/, sdk/python/, plugins/ and tools/bench/.

setuptools maps the import names onto other directories (pyproject's
[tool.setuptools.package-dir]: vivified -> gen/vivified, vivified.core -> core, ...) and the
editable install resolves them with an import hook that mypy does not follow. So this lays the
same package tree out as symlinks in a temporary directory, runs mypy there, and prints its
findings with the paths of the real files. Extra arguments go to mypy.

Usage: python tools/typecheck.py [mypy args]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The packages held to mypy --strict; everything else (gen/) is only imported.
CHECKED = ("vivified.core", "vivified.sdk", "vivified.bench", "vivified.plugins")


def package_dirs() -> dict[str, Path]:
    """Import name -> source directory, as setuptools installs them."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        mapping: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / directory for name, directory in mapping.items()}


def build_tree(farm: Path, dirs: dict[str, Path]) -> None:
    """Symlink every mapped directory into farm at the place its import name says."""
    for name in dirs:
        if name.count(".") > 1:
            sys.exit(f"typecheck: package-dir maps {name}; only one level below a top package is supported")
    for top in [name for name in dirs if "." not in name]:
        subpackages = {name.removeprefix(top + "."): path for name, path in dirs.items() if name.startswith(top + ".")}
        package = farm / top
        package.mkdir()
        for entry in dirs[top].iterdir():
            if entry.name not in subpackages and entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        for name, path in subpackages.items():
            (package / name).symlink_to(path)


def main() -> int:
    dirs = package_dirs()
    with tempfile.TemporaryDirectory(prefix="vivified-typecheck-") as tmp:
        farm = Path(tmp)
        build_tree(farm, dirs)
        targets = [name.replace(".", "/") for name in CHECKED]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                # Kept in the work tree so a second run only re-checks what changed.
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                *sys.argv[1:],
                *targets,
            ],
            cwd=farm,
            check=False,  # mypy's exit status is passed on below
            capture_output=True,
            text=True,
        )
    # Report the real paths (core/x.py, not vivified/core/x.py) so editors can jump to them.
    prefixes = {name.replace(".", "/") + "/": os.path.relpath(dirs[name], ROOT) + "/" for name in CHECKED}
    for stream, text in ((sys.stdout, result.stdout), (sys.stderr, result.stderr)):
        for line in text.splitlines(keepends=True):
            for farm_prefix, real_prefix in prefixes.items():
                if line.startswith(farm_prefix):
                    line = real_prefix + line.removeprefix(farm_prefix)
                    break
            stream.write(line)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
