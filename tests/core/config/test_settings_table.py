"""The settings table is the one declaration of each core setting: every
row's CoreConfig field is read by the code, and the generated flags, the
environment variables, `config show`, CoreConfig's defaults and the
components' own defaults agree with the rows."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import re
import subprocess
import sys

import pytest

from support.processes import clean_env
from vivified.core.cli import build_parser
from vivified.core.cli._settings import CORE_VARIABLES, build_core_config
from vivified.core.config import CoreConfig
from vivified.core.settings import SETTINGS, Setting, SettingsError, field_value, flag_origin, resolve

CORE = pathlib.Path(__file__).resolve().parents[3] / "core"
# The modules that implement the settings themselves: reading a field there is not using it.
SETTINGS_MODULES = {
    "settings",
    "config.py",
    "cli/_settings.py",
    "cli/_config_cmd.py",
    "cli/_config_file.py",
    "cli/_core_settings_cmd.py",
}


def _attributes_read(root: pathlib.Path) -> set[str]:
    """Every attribute name read (`x.name` in a load context) outside the settings modules."""
    names: set[str] = set()
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if any(relative == m or relative.startswith(f"{m}/") for m in SETTINGS_MODULES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


def unread(rows: tuple[Setting, ...], read: set[str]) -> list[str]:
    """Rows whose CoreConfig field (each part of its dotted path) nothing reads."""
    return [s.key for s in rows if not all(part in read for part in s.field.split("."))]


def test_every_row_is_read_by_the_code() -> None:
    read = _attributes_read(CORE)
    assert unread(SETTINGS, read) == []
    # The scan can fail: a row whose field nothing reads is named.
    dead = Setting("dead_knob", "int", 1, "events.dead_knob_nobody_reads", "unused", "VIVIFIED_DEAD_KNOB", "--dead")
    assert unread((*SETTINGS, dead), read) == ["dead_knob"]


def test_profiles_are_defined_once() -> None:
    assigned = [
        path.relative_to(CORE).as_posix()
        for path in CORE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PROFILES" for t in node.targets)
    ]
    assert assigned == ["settings/_table.py"]


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


_TYPES = {"int": int, "float": float, "path": pathlib.Path, "paths3": pathlib.Path}
_NOT_SETTINGS = {"-h", "--help", "-v", "--verbose", "--log-format", "--config", "--accept-audit-tampering"}


@pytest.mark.parametrize("command", [("core",), ("up",), ("config", "show")])
def test_generated_flags_agree_with_the_table(command: tuple[str, ...]) -> None:
    parser = _subparser(build_parser(), *command)
    flags = parser._option_string_actions
    rows = [s for s in SETTINGS if s.flag is not None]
    up_only = {"--plugin", "--allow-unsandboxed"}  # `up`'s own options, not core settings
    assert {f for f in flags if f not in _NOT_SETTINGS and f not in up_only} == {s.flag for s in rows}
    for setting in rows:
        action = flags[setting.flag]  # type: ignore[index]
        assert action.dest == setting.key
        assert action.help is not None and action.help.endswith(f"(default {setting.default_help})"), setting.key
        assert action.choices == (list(setting.choices) if setting.choices else None)
        assert action.type is _TYPES.get(setting.kind)
        assert action.nargs == (3 if setting.kind == "paths3" else None)
    assert all(s.flag is None for s in SETTINGS if s.env is not None and s.key not in {r.key for r in rows})


def _sample(setting: Setting) -> str:
    if setting.choices:
        return setting.choices[-1]
    if setting.default is not None:
        return str(setting.default)
    return {"url": "redis://127.0.0.1:6379/0", "path": "/srv/x", "secret": "key"}[setting.kind]


def test_environment_variables_agree_with_the_table() -> None:
    assert {s.env for s in SETTINGS if s.env is not None} | {"VIVIFIED_CONFIG_FILE"} == CORE_VARIABLES
    args = build_parser().parse_args(["core"])
    for setting in SETTINGS:
        if setting.env is None:
            continue
        resolved = resolve(args, {setting.env: _sample(setting)}, {}, None)
        assert list(resolved) == [setting.key]
        assert resolved[setting.key].source == f"env:{setting.env}"


def test_defaults_agree_with_coreconfig_and_the_components(tmp_path: pathlib.Path) -> None:
    config = CoreConfig(data_dir=tmp_path)
    for setting in SETTINGS:
        if setting.build is not None or setting.key == "data_dir":
            continue
        assert field_value(config, setting) == setting.default, setting.key
        head, _, rest = setting.field.partition(".")
        if rest:  # the component's own default (used when it is built without the core) agrees too
            component = type(getattr(config, head))()
            assert getattr(component, rest) == setting.default, setting.key
    for field in dataclasses.fields(CoreConfig):
        if field.name == "data_dir":
            continue
        assert field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def _outside(setting: Setting) -> list[float]:
    """Values just outside the row's bounds."""
    step = 1 if setting.kind == "int" else 0.0001
    values = []
    if setting.low is not None:
        values.append(setting.low if setting.low_open else setting.low - step)
    if setting.high is not None:
        values.append(setting.high + step)
    return [int(v) if setting.kind == "int" else v for v in values]


def test_bounds_of_each_row_are_enforced_at_every_layer(tmp_path: pathlib.Path) -> None:
    args = build_parser().parse_args(["core"])
    checked = 0
    for setting in SETTINGS:
        for value in _outside(setting):
            named = setting.key if "." not in setting.field else re.escape(flag_origin(setting))
            assert setting.env is not None
            for layer in ({setting.env: str(value)}, {}):
                given = args if layer else build_parser().parse_args(["core", str(setting.flag), str(value)])
                with pytest.raises(SettingsError, match=f"{named} must be"):
                    build_core_config(resolve(given, layer, {}, None))
            if "." not in setting.field:  # a CoreConfig built directly checks the same row
                with pytest.raises(ValueError, match=f"{setting.field} must be"):
                    CoreConfig(data_dir=tmp_path, **{setting.field: value})
            checked += 1
    assert checked >= 20


def test_config_show_lists_every_row_with_its_default(tmp_path: pathlib.Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", "config", "show", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if not line.startswith("note:")]
    assert rows[0] == ["config_file", "(none)", "none"]
    assert [r[0] for r in rows[1:]] == [s.key for s in SETTINGS]
    for setting, row in zip(SETTINGS, rows[1:], strict=True):
        if setting.key == "data_dir":
            assert row[1:] == [str(tmp_path / "data"), "flag"]
        else:
            assert row[1:] == ["(none)" if setting.default is None else str(setting.default), "default"], setting.key
