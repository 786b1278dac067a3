"""docs/security.md stays true: every test its case table names exists, and
every test named for a catalogue case (`test_h1_…`) is listed under its case."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| ([A-Z]\d+) \| [^|]+ \| (.*) \|$", re.M)
LISTED = re.compile(r"`([^`]+)::(test_\w+)`")
DEFINED = re.compile(r"^\s*(?:async )?def (test_([a-z])(\d+)_\w+)", re.M)


def _table() -> dict[str, set[tuple[str, str]]]:
    text = (ROOT / "docs" / "security.md").read_text()
    return {case: set(LISTED.findall(tests)) for case, tests in ROW.findall(text)}


def _defined() -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        for name, letter, number in DEFINED.findall(path.read_text()):
            found.setdefault(f"{letter.upper()}{number}", set()).add((str(path.relative_to(ROOT / "tests")), name))
    return found


def test_every_listed_test_exists() -> None:
    defined = set().union(*_defined().values())
    listed = set().union(*_table().values())
    assert listed, "docs/security.md lists no tests"
    assert sorted(listed - defined) == []


def test_every_case_test_is_listed_under_its_case() -> None:
    table, defined = _table(), _defined()
    unknown = sorted(set(defined) - set(table))
    assert unknown == [], f"tests named for cases the catalogue does not have: {unknown}"
    unlisted = {case: sorted(tests - table[case]) for case, tests in defined.items() if tests - table[case]}
    assert unlisted == {}
