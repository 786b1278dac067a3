"""Command-line flags, `VIVIFIED_*` environment and the config file → CoreConfig,
read once here (precedence in `vivified.core.settings`). The flags, and the
CoreConfig field each value sets, are generated from the settings table.

An unknown `VIVIFIED_*` variable or config file key is refused, so a typo
never silently leaves a setting at its default."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from vivified.core.cli._config_file import config_file_path, load_config_file
from vivified.core.config import CoreConfig
from vivified.core.settings import (
    DEFAULT_DATA_DIR,
    SETTINGS,
    Resolved,
    Setting,
    SettingsError,
    assignments,
    resolve,
    with_fields,
)

# Variables of the core, and the ones `vivified up` hands to plugin processes.
CORE_VARIABLES = frozenset(s.env for s in SETTINGS if s.env is not None) | {"VIVIFIED_CONFIG_FILE"}
CLIENT_VARIABLES = frozenset({"VIVIFIED_CORE_ADDRESS", "VIVIFIED_API_KEY"})
PLUGIN_VARIABLES = frozenset(
    {"VIVIFIED_MANIFEST", "VIVIFIED_JOIN_TOKEN", "VIVIFIED_CA_FILE", "VIVIFIED_PLUGIN_DATA_DIR"}
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "SettingsError",
    "add_core_flags",
    "add_setting_flag",
    "check_environment",
    "core_config",
    "resolved_settings",
]


def check_environment(environ: Mapping[str, str]) -> None:
    known = CORE_VARIABLES | CLIENT_VARIABLES | PLUGIN_VARIABLES
    unknown = sorted(k for k in environ if k.startswith("VIVIFIED_") and k not in known)
    if unknown:
        raise SettingsError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


_TYPES: dict[str, Callable[[str], object]] = {"int": int, "float": float, "path": pathlib.Path, "paths3": pathlib.Path}


def add_setting_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, setting: Setting) -> None:
    """The flag of one table row: its dest is the key and its help ends with the row's default.
    A row without a flag (environment only) adds nothing."""
    if setting.flag is None:
        return
    options: dict[str, Any] = {"dest": setting.key, "help": f"{setting.help} (default {setting.default_help})"}
    if setting.choices:
        options["choices"] = list(setting.choices)
    else:
        options["metavar"] = setting.metavar
    if setting.kind in _TYPES:
        options["type"] = _TYPES[setting.kind]
    if setting.kind == "paths3":
        options["nargs"] = 3
    parser.add_argument(setting.flag, **options)


def add_core_flags(parser: argparse.ArgumentParser) -> None:
    """`--config`, one flag per settings table row, and `--accept-audit-tampering`
    (a flag of one run, not a setting)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (or $VIVIFIED_CONFIG_FILE); environment and flags override it",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in SETTINGS:
        if setting.group and setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(setting.group)
        add_setting_flag(groups[setting.group] if setting.group else parser, setting)
    groups["audit log"].add_argument(
        "--accept-audit-tampering",
        dest="accept_audit_tampering",
        type=int,
        metavar="SEQ",
        help="this run only: start although the audit tail check names SEQ as its first bad sequence; "
        "recorded as the first audit record and raised as a SecurityAlert",
    )


def resolved_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Resolved]:
    """Every setting given somewhere, with its source; the file is read here."""
    check_environment(environ)
    path = config_file_path(args, environ)
    file_values = load_config_file(path) if path is not None else {}
    return resolve(args, environ, file_values, path)


def build_core_config(resolved: Mapping[str, Resolved]) -> CoreConfig:
    """The CoreConfig the resolved settings describe: each value set on its
    row's field (with its burst, or built into what the field holds), every
    other field at its default; each config is checked once with all its values."""
    try:
        fields: dict[str, Any] = {}
        for r in resolved.values():
            fields.update(assignments(r.setting, r.value))
        directory = fields.pop("data_dir", DEFAULT_DATA_DIR)
        sources = tuple((key, r.source) for key, r in resolved.items())
        return with_fields(CoreConfig(data_dir=directory, setting_sources=sources), fields)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def core_config(args: argparse.Namespace, environ: Mapping[str, str]) -> CoreConfig:
    """Flags win over the environment, which wins over the config file, which
    wins over built-in defaults. `--accept-audit-tampering` is a flag of one
    run, never a setting a file or the environment could keep."""
    config = build_core_config(resolved_settings(args, environ))
    accept = getattr(args, "accept_audit_tampering", None)
    return config if accept is None else replace(config, accept_audit_tampering=accept)
