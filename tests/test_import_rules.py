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


# -- inside the core: packages use each other's public surface, and no cycle --

CORE = "vivified.core"


def _core_package(path: pathlib.Path) -> str:
    """`core/registry/_store.py` -> `registry`; `core/app.py` -> `app`."""
    first = path.relative_to(ROOT / "core").parts[0]
    return first.removesuffix(".py")


def _core_imports(path: pathlib.Path, tree: ast.AST) -> list[tuple[int, str]]:
    """Every `vivified.core...` module or name a core file imports, relative
    imports resolved, `from X import name` as `X.name`."""
    module = ".".join((CORE, *path.relative_to(ROOT / "core").with_suffix("").parts))
    if path.name == "__init__.py":
        module = module.removesuffix(".__init__") + ".__init__"  # its package is the base of `from .`
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            names.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return [(line, name) for line, name in names if name.startswith(CORE + ".")]


def _private_violations(own: str, imports: list[tuple[int, str]]) -> list[str]:
    """Imports of another core package's private (`_x`) modules or names."""
    found = []
    for line, name in imports:
        parts = name.split(".")[2:]  # after vivified.core
        if parts[0] != own and any(part.startswith("_") and part != "__init__" for part in parts):
            found.append(f"{line}: {name}")
    return found


def _type_only_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: imports for annotations only,
    which never run, so they are no edge of the runtime import graph."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _core_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "core").rglob("*.py")):
        own = _core_package(path)
        edges = graph.setdefault(own, set())
        tree = ast.parse(path.read_text(), str(path))
        type_only = _type_only_lines(tree)
        for line, name in _core_imports(path, tree):
            if line in type_only:
                continue
            target = name.split(".")[2]
            if target != own and ((ROOT / "core" / target).is_dir() or (ROOT / "core" / f"{target}.py").is_file()):
                edges.add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (`[a, b, ..., a]`), or [] when there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for target in sorted(graph.get(node, ())):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def test_core_packages_import_only_each_others_public_surface() -> None:
    """`from vivified.core.registry import PluginConnector`, never
    `from vivified.core.registry._connector import ...` from outside registry."""
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        imports = _core_imports(path, ast.parse(path.read_text(), str(path)))
        found += [f"{path.relative_to(ROOT)}:{v}" for v in _private_violations(_core_package(path), imports)]
    assert found == []


def test_core_packages_have_no_import_cycle() -> None:
    assert _cycle(_core_graph()) == []


def test_the_core_checks_see_private_imports_and_cycles() -> None:
    path = ROOT / "core" / "events" / "_guard.py"
    source = (
        "from vivified.core.gateway._breaker import CircuitBreakers\n"
        "from vivified.core.gateway import _breaker\n"
        "import vivified.core.registry._store\n"
        "from vivified.core.events._bus import EventBus\n"
        "from ._bus import EventBus\n"
        "from ..gateway._forward import Forwarder\n"
        "from vivified.core.gateway import CircuitBreakers\n"
    )
    imports = _core_imports(path, ast.parse(source))
    assert _private_violations("events", imports) == [
        "1: vivified.core.gateway._breaker.CircuitBreakers",
        "2: vivified.core.gateway._breaker",
        "3: vivified.core.registry._store",
        "6: vivified.core.gateway._forward.Forwarder",
    ]
    assert _cycle(
        {"events": {"gateway"}, "gateway": {"registry"}, "registry": {"manifest"}, "manifest": {"events"}}
    ) == ["events", "gateway", "registry", "manifest", "events"]
    assert _cycle({"events": {"gateway"}, "gateway": {"registry"}, "registry": set()}) == []
