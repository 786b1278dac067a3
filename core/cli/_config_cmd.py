"""`vivified config show`: every core setting, its effective value and its source.

`vivified config plugin get|set|history` (plugin configuration on a running
core) lives in `_plugin_config_cmd`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from vivified.core.cli import _plugin_config_cmd
from vivified.core.cli._config_file import config_file_path, has_password
from vivified.core.cli._settings import (
    add_core_flags,
    build_core_config,
    resolved_settings,
)
from vivified.core.cli._sources import SETTINGS
from vivified.core.config import CoreConfig

MASK = "********"

# Where each setting's effective value lives in the built CoreConfig.
_EFFECTIVE: dict[str, Callable[[CoreConfig], object]] = {
    "redis_url": lambda c: c.events.redis_url,
    "event_ack_timeout": lambda c: c.events.ack_timeout_seconds,
    "event_max_attempts": lambda c: c.events.max_attempts,
    "event_dedupe_window": lambda c: c.events.dedupe_window_seconds,
    "event_max_backlog": lambda c: c.events.max_backlog,
    "event_publish_rate": lambda c: c.events.publish_rate,
    "max_call_deadline": lambda c: c.gateway.max_deadline_seconds,
    "breaker_cooldown": lambda c: c.gateway.breaker_cooldown_seconds,
    "call_rate": lambda c: c.rate_limit.rate_per_second,
    "ca_files": lambda c: None if c.ca_paths is None else (
        c.ca_paths.root_certificate, c.ca_paths.issuing_certificate, c.ca_paths.issuing_key),
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `config` with its `show` and `plugin` verbs."""
    config = sub.add_parser("config", help="core settings and plugin configuration")
    verbs = config.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser(
        "show",
        help="print every core setting with its source",
        description="Effective core settings. Precedence: default < config file < VIVIFIED_* environment < flags.",
    )
    show.add_argument("--data-dir", help="keys, database and audit checkpoints (default ./.vivified)")
    add_core_flags(show)
    _plugin_config_cmd.add_parser(verbs)


def _text(key: str, value: object) -> str:
    if value is None:
        return "(none)"
    if key == "secrets_key":
        return MASK
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if key in ("database_url", "redis_url") and has_password(str(value)):
        parts = urlsplit(str(value))
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return str(value)


def show(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    resolved = resolved_settings(args, environ)
    config = build_core_config(resolved)
    path = config_file_path(args, environ)
    file_source = "none" if path is None else ("flag" if getattr(args, "config", None) else "env:VIVIFIED_CONFIG_FILE")
    out.append(f"{'config_file':28} {str(path) if path else '(none)':40} {file_source}")
    for setting in SETTINGS:
        getter = _EFFECTIVE.get(setting.key)
        if setting.key == "egress_config":
            value = resolved[setting.key].value if setting.key in resolved else None
        else:
            value = getter(config) if getter is not None else getattr(config, setting.key)
        source = resolved[setting.key].source if setting.key in resolved else "default"
        out.append(f"{setting.key:28} {_text(setting.key, value):40} {source}")
    return 0
