"""The settings table is the one declaration of each core setting: every
row's CoreConfig field is read by the code, a value given through the row's
flag, its variable or (runtime rows) a live override reaches that field,
CoreConfig's fields of the rows are generated from the table, and the
generated flags, the environment variables, `config show`, CoreConfig's
defaults and the components' own defaults agree with the rows."""

from __future__ import annotations

import argparse
import ast
import asyncio
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
from vivified.core.settings import (
    BY_KEY,
    SETTINGS,
    LiveSettings,
    Override,
    Setting,
    SettingsError,
    apply_overrides,
    burst_for,
    convert,
    field_value,
    flag_origin,
    resolve,
)
from vivified.core.settings._generate import TARGET, generates_field, render

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


def _component_reads(config: CoreConfig) -> dict[str, set[str]]:
    """For each component config a row sets a field of (`events`, `gateway`, ...): the
    attribute names read in that component's own package (where its config is defined)."""
    reads: dict[str, set[str]] = {}
    for setting in SETTINGS:
        head, _, rest = setting.field.partition(".")
        if rest and head not in reads:
            package = type(getattr(config, head)).__module__.split(".")[2]  # vivified.core.<package>._config
            reads[head] = _attributes_read(CORE / package)
    return reads


def unread_by_component(rows: tuple[Setting, ...], reads: dict[str, set[str]]) -> list[str]:
    """Rows setting a component's config field that the component's own package never reads."""
    return [s.key for s in rows if "." in s.field and s.field.partition(".")[2] not in reads[s.field.partition(".")[0]]]


def _non_default(setting: Setting, directory: pathlib.Path) -> list[str]:
    """Command-line text of a value for the row that is not its default and within its bounds."""
    if setting.choices:
        return [next(c for c in setting.choices if c != setting.default)]
    if setting.kind == "paths3":
        return [str(directory / name) for name in ("root.crt", "issuing.crt", "issuing.key")]
    if setting.kind == "path" and setting.build is not None:  # a file the row loads (the egress config)
        path = directory / f"{setting.key}.json"
        path.write_text('{"max_redirects": 2}')
        return [str(path)]
    if setting.kind == "path":
        return [str(directory / setting.key)]
    if setting.kind == "url":
        return [f"{setting.prefixes[0]}127.0.0.1:6379/0" if setting.prefixes else "postgresql://v@127.0.0.1/v"]
    if setting.kind == "secret":
        return ["a-key"]
    if setting.kind == "str":
        return ["127.0.0.1:1" if ":" in str(setting.default) else "example.test"]
    number = int if setting.kind == "int" else float
    default = setting.default
    candidates = [default * 2, default + 1, default / 2, (setting.low or 0) + 1, setting.high]
    value = next(
        number(v) for v in candidates if v is not None and number(v) != default and setting.problem(number(v)) is None
    )
    return [str(value)]


class _Stored:
    """The override store as LiveSettings reads it: these overrides, no history."""

    def __init__(self, overrides: dict[str, Override]) -> None:
        self.stored = overrides

    async def overrides(self) -> dict[str, Override]:
        return self.stored

    async def history(self, limit: int, key: str) -> list[object]:
        return []


def _holds(config: CoreConfig, setting: Setting, typed: object, source: str | None) -> bool:
    """The row's field (and its burst) hold the typed value, recorded as from `source`."""
    expected = setting.build(typed) if setting.build is not None else typed
    try:
        if field_value(config, setting) != expected:
            return False
        if setting.burst is not None:
            burst = field_value(config, dataclasses.replace(setting, field=setting.burst))
            if burst != burst_for(float(typed)):  # type: ignore[arg-type]
                return False
    except AttributeError:  # the row names a field the config does not have
        return False
    return source is None or (setting.key, source) in config.setting_sources


def _reaches(setting: Setting, directory: pathlib.Path) -> bool:
    texts = _non_default(setting, directory)
    typed = convert(setting, texts if setting.kind == "paths3" else texts[0], None)
    default_config = CoreConfig(data_dir=directory)
    if _holds(default_config, setting, typed, None):
        return False  # the sample would prove nothing
    layers: list[tuple[list[str], dict[str, str], str]] = []
    if setting.flag is not None:
        layers.append((["core", setting.flag, *texts], {}, "flag"))
    if setting.env is not None:
        layers.append((["core"], {setting.env: texts[0]}, f"env:{setting.env}"))
    for argv, environ, source in layers:
        try:
            config = build_core_config(resolve(build_parser().parse_args(argv), environ, {}, None))
        except SystemExit:  # the parser has no such flag
            return False
        if not _holds(config, setting, typed, source):
            return False
    if setting.runtime:
        override = Override(setting.key, str(typed), "admin", "test", 0)
        live = LiveSettings(
            default_config,
            _Stored({setting.key: override}),  # type: ignore[arg-type]
            apply_overrides(default_config, {}),
            interval=1,
        )
        if not asyncio.run(live.refresh("admin")) or not _holds(live.current, setting, typed, None):
            return False
    return bool(layers)


def unwired(rows: tuple[Setting, ...], directory: pathlib.Path) -> list[str]:
    """Rows a non-default value does not reach through the real paths: the
    row's flag (parsed by the generated parser), its variable (`resolve`)
    and, for a runtime row, an override a running core's LiveSettings
    applies on refresh; each must set the row's CoreConfig field (and its
    burst) to the typed value, and flag and variable must be recorded as its source."""
    return [s.key for s in rows if not _reaches(s, directory)]


def test_every_row_is_read_by_the_code(tmp_path: pathlib.Path) -> None:
    read = _attributes_read(CORE)
    assert unread(SETTINGS, read) == []
    # The scan can fail: a row whose field nothing reads is named.
    dead = Setting("dead_knob", "int", 1, "events.dead_knob_nobody_reads", "unused", "VIVIFIED_DEAD_KNOB", "--dead")
    assert unread((*SETTINGS, dead), read) == ["dead_knob"]
    # A component's field is read by that component, not just somewhere.
    reads = _component_reads(CoreConfig(data_dir=tmp_path))
    assert unread_by_component(SETTINGS, reads) == []
    # events reads dedupe_window_seconds (it is a row's field); the gateway does not.
    elsewhere = dataclasses.replace(dead, field="gateway.dedupe_window_seconds")
    assert "dedupe_window_seconds" in reads["events"] and "dedupe_window_seconds" not in reads["gateway"]
    assert unread_by_component((*SETTINGS, elsewhere), reads) == ["dead_knob"]
    # Each row's value reaches its field through its flag, its variable and (runtime rows) a live override.
    assert unwired(SETTINGS, tmp_path) == []
    # That check fails too: a row the flags and variables do not know, or one naming another row's field.
    misplaced = dataclasses.replace(BY_KEY["event_max_attempts"], field="events.max_backlog")
    assert unwired((dead, misplaced), tmp_path) == ["dead_knob", "event_max_attempts"]


def test_config_fields_are_generated_from_the_table() -> None:
    """CoreConfig's fields of the rows are `_config_fields.py`, as `_generate` writes it
    from the table now: a new row is a new field once the file is written again."""
    assert TARGET.read_text() == render(), "run: python -m vivified.core.settings._generate"
    generated = {f.name for f in dataclasses.fields(CoreConfig)} & {s.field for s in SETTINGS if generates_field(s)}
    assert generated == {s.field for s in SETTINGS if generates_field(s)}
    new = Setting("new_knob_seconds", "float", 2.5, "new_knob_seconds", "a new knob", "VIVIFIED_NEW_KNOB", "--new-knob")
    assert render((*SETTINGS, new)) != render()
    assert '    new_knob_seconds: float = default("new_knob_seconds")\n    """a new knob"""\n' in render(
        (*SETTINGS, new)
    )


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
