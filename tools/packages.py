"""Print the package list for pyproject.toml's [tool.setuptools] `packages`.

Run `python tools/packages.py` after adding a package; tests/test_packaging.py
fails when the list and the tree disagree.
"""

from __future__ import annotations

import pathlib
import tomllib

_TOP = pathlib.Path(__file__).resolve().parent.parent
# Import name -> source directory: pyproject's [tool.setuptools.package-dir], the one declaration.
_SETUPTOOLS = tomllib.loads((_TOP / "pyproject.toml").read_text())["tool"]["setuptools"]
ROOTS: dict[str, str] = _SETUPTOOLS["package-dir"]
# Roots that hold only package data (the .proto files): listed although they have no __init__.py.
DATA_ROOTS = frozenset(
    name
    for name, rel in ROOTS.items()
    if not (_TOP / rel / "__init__.py").exists() and name in _SETUPTOOLS.get("package-data", {})
)


def packages(top: pathlib.Path) -> list[str]:
    found: set[str] = set(DATA_ROOTS)
    for name, rel in ROOTS.items():
        base = top / rel
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            found.add(".".join((name, *parts)) if parts else name)
    return sorted(found)


if __name__ == "__main__":
    for pkg in packages(_TOP):
        print(f'  "{pkg}",')
