"""`vivified config show`: every core setting, its effective value and its source,
one line per settings table row (the value read from the row's CoreConfig field).

The runtime overrides stored in the database are the top layer: `show` reads
them through the configured database URL (never creating or migrating a
database) and reports `database (set by <actor>: <reason>)` where one
applies; a database it cannot read is said so, and the lower layers shown.

`vivified config plugin get|set|history` (plugin configuration on a running
core) lives in `_plugin_config_cmd`, `vivified config core set|unset|list|history`
in `_core_settings_cmd`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from vivified.core.audit import PROMISES
from vivified.core.cli import _core_settings_cmd, _plugin_config_cmd
from vivified.core.cli._config_file import config_file_path, has_password
from vivified.core.cli._settings import (
    add_core_flags,
    build_core_config,
    resolved_settings,
)
from vivified.core.config import CoreConfig
from vivified.core.db import DatabaseError, describe_url, driver_message, plain_engine, sqlite_url
from vivified.core.settings import (
    SETTINGS,
    Applied,
    Setting,
    apply_overrides,
    field_value,
    read_overrides,
)

MASK = "********"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `config` with its `show` and `plugin` verbs."""
    config = sub.add_parser("config", help="core settings and plugin configuration")
    verbs = config.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser(
        "show",
        help="print every core setting with its source",
        description="Effective core settings. Precedence: default < config file < VIVIFIED_* environment < flags "
        "< runtime overrides stored in the database (vivified config core set), which a running core applies live.",
    )
    add_core_flags(show)
    _plugin_config_cmd.add_parser(verbs)
    _core_settings_cmd.add_parser(verbs)


def _text(setting: Setting, value: object) -> str:
    if value is None:
        return "(none)"
    if setting.kind == "secret":
        return MASK
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if setting.kind == "url" and has_password(str(value)):
        parts = urlsplit(str(value))
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return str(value)


def _database_layer(config: CoreConfig) -> tuple[Applied | None, str]:
    """The config with the stored overrides applied, or None and why they were not read."""
    default_file = config.data_dir / "vivified.db"
    if config.database_url is None and not default_file.exists():
        return None, f"no database at {default_file} yet: no runtime overrides"
    try:
        engine = plain_engine(config.database_url or sqlite_url(default_file))
    except DatabaseError as exc:
        return None, f"runtime overrides not read: {exc}"
    try:
        return apply_overrides(config, read_overrides(engine)), ""
    except sa.exc.DBAPIError as exc:
        problem = driver_message(exc, engine.url)
        return None, f"runtime overrides not read: database {describe_url(engine.url)}: {problem}"
    finally:
        engine.dispose()


def show(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    resolved = resolved_settings(args, environ)
    config = build_core_config(resolved)
    applied, note = _database_layer(config)
    if applied is not None:
        config = applied.config
    sources = dict(config.setting_sources)
    path = config_file_path(args, environ)
    file_source = "none" if path is None else ("flag" if getattr(args, "config", None) else "env:VIVIFIED_CONFIG_FILE")
    out.append(f"{'config_file':28} {str(path) if path else '(none)':40} {file_source}")
    for setting in SETTINGS:
        if setting.build is not None:  # the field holds what the value built (a loaded file): show the value
            value = resolved[setting.key].value if setting.key in resolved else setting.default
        else:
            value = field_value(config, setting)
        out.append(f"{setting.key:28} {_text(setting, value):40} {sources.get(setting.key, 'default')}")
    out.append(f"note: audit_durability={config.audit_durability} promises: {PROMISES[config.audit_durability]}")
    if note:
        out.append(f"note: {note}")
    for key, problem in applied.refused.items() if applied is not None else ():
        out.append(f"note: the stored override of {key} does not apply: {problem}")
    return 0
