"""Imports flow one way: gen ← sdk ← plugins, gen ← core, and the benchmark
(`vivified.bench`) sits above both. Parsed with `ast`, so a violation fails here
whether or not any test happens to import the offending module."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Source directory -> the vivified packages its modules may not import.
FORBIDDEN = {
    "gen/vivified": ("vivified.core", "vivified.sdk", "vivified.plugins", "vivified.bench"),
    "core": ("vivified.sdk", "vivified.plugins", "vivified.bench"),
    "sdk/python": ("vivified.core", "vivified.plugins", "vivified.bench"),
    "plugins": ("vivified.core", "vivified.bench"),
}
# Calls that import a module named by a string.
DYNAMIC_IMPORTS = {"import_module", "__import__", "files", "find_module"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in DYNAMIC_IMPORTS and node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str):
                    names.append((node.lineno, node.args[0].value))
    return names


def _violations(directory: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / directory).rglob("*.py")):
        for line, name in _imported(ast.parse(path.read_text(), str(path))):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("directory", sorted(FORBIDDEN))
def test_imports_flow_one_way(directory: str) -> None:
    assert _violations(directory, FORBIDDEN[directory]) == []


def test_the_check_sees_static_and_dynamic_imports(tmp_path: pathlib.Path) -> None:
    source = "import vivified.sdk\nfrom vivified.plugins.x import y\nimportlib.import_module('vivified.sdk._run')\n"
    lines = [name for _, name in _imported(ast.parse(source))]
    assert lines == ["vivified.sdk", "vivified.plugins.x", "vivified.sdk._run"]
