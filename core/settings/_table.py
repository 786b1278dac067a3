"""The core's settings as one table, and where each effective value came from.

Precedence, lowest to highest: built-in defaults < config file (`--config` /
`VIVIFIED_CONFIG_FILE`) < environment (`VIVIFIED_*`) and command-line flags
(a flag beats its variable) < runtime overrides administrators store in the
database (`runtime=True` settings only, applied by the running core: at once on
the replica that stored them, within `settings_refresh_seconds` on the others). The
file holds what an installation keeps; the environment what a deployment
(container, unit file) sets; flags what the operator chooses for this one run.
Every resolved value carries its source: `default`, `file:<path>`,
`env:<VARIABLE>`, `flag` or `database (set by <actor>: <reason>)`.

The table lives in the core, not the CLI, because the core validates runtime
overrides with the same types and parsing as the file and environment.
"""

from __future__ import annotations

import argparse
import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROFILES = ("development", "production")


class SettingsError(Exception):
    """A flag, variable, config file entry or override the core cannot accept; the message says which."""


@dataclass(frozen=True)
class Setting:
    """One core setting: its key (file key and argparse dest), type and variable."""

    key: str
    kind: str
    """`str`, `int`, `float`, `path`, `url` (may hold a password: masked when shown),
    `secret` (always masked when shown) or `paths3`."""
    env: str | None
    flag: str
    choices: tuple[str, ...] = ()
    in_file: bool = True
    """False for a key that must not sit in the config file (the secrets key itself)."""
    runtime: bool = False
    """True for a setting administrators may override in the database: tuning
    that is safe to change on a running installation, never bootstrap or
    security-critical settings (addresses, data dir, database, trust domain,
    CA, secrets, profile, policy or egress files)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "path", "VIVIFIED_DATA_DIR", "--data-dir"),
    Setting("profile", "str", "VIVIFIED_PROFILE", "--profile", PROFILES),
    Setting("listen_address", "str", "VIVIFIED_LISTEN_ADDRESS", "--listen"),
    Setting("bootstrap_address", "str", "VIVIFIED_BOOTSTRAP_ADDRESS", "--bootstrap"),
    Setting("metrics_address", "str", "VIVIFIED_METRICS_ADDRESS", "--metrics"),
    Setting("trust_domain", "str", "VIVIFIED_TRUST_DOMAIN", "--trust-domain"),
    Setting("database_url", "url", "VIVIFIED_DATABASE_URL", "--database-url"),
    Setting("policy_file", "path", "VIVIFIED_POLICY_FILE", "--policy-file"),
    Setting("leaf_ttl_seconds", "int", "VIVIFIED_LEAF_TTL_SECONDS", "--leaf-ttl", runtime=True),
    Setting(
        "heartbeat_interval_seconds", "float", "VIVIFIED_HEARTBEAT_INTERVAL_SECONDS", "--heartbeat-interval",
        runtime=True,
    ),
    Setting("egress_config", "path", "VIVIFIED_EGRESS_CONFIG", "--egress-config"),
    Setting("ca_files", "paths3", None, "--ca-files"),
    Setting("redis_url", "url", "VIVIFIED_REDIS_URL", "--redis-url"),
    Setting("event_ack_timeout", "float", "VIVIFIED_EVENT_ACK_TIMEOUT", "--event-ack-timeout", runtime=True),
    Setting("event_max_attempts", "int", "VIVIFIED_EVENT_MAX_ATTEMPTS", "--event-max-attempts", runtime=True),
    Setting("event_dedupe_window", "float", "VIVIFIED_EVENT_DEDUPE_WINDOW", "--event-dedupe-window", runtime=True),
    Setting("event_max_backlog", "int", "VIVIFIED_EVENT_MAX_BACKLOG", "--event-max-backlog", runtime=True),
    Setting("event_publish_rate", "float", "VIVIFIED_EVENT_PUBLISH_RATE", "--event-publish-rate", runtime=True),
    Setting("event_max_dead_letters", "int", "VIVIFIED_EVENT_MAX_DEAD_LETTERS", "--event-max-dead-letters"),
    Setting("event_max_subscriptions", "int", "VIVIFIED_EVENT_MAX_SUBSCRIPTIONS", "--event-max-subscriptions"),
    Setting("call_rate", "float", "VIVIFIED_CALL_RATE", "--call-rate", runtime=True),
    Setting("max_streams", "int", "VIVIFIED_MAX_STREAMS", "--max-streams"),
    Setting("max_calls", "int", "VIVIFIED_MAX_CALLS", "--max-calls"),
    Setting("max_connections", "int", "VIVIFIED_MAX_CONNECTIONS", "--max-connections"),
    Setting("handshake_timeout_seconds", "float", "VIVIFIED_HANDSHAKE_TIMEOUT", "--handshake-timeout"),
    Setting("init_timeout_seconds", "float", "VIVIFIED_INIT_TIMEOUT_SECONDS", "--init-timeout"),
    Setting("max_call_deadline", "float", "VIVIFIED_MAX_CALL_DEADLINE", "--max-call-deadline", runtime=True),
    Setting("breaker_cooldown", "float", "VIVIFIED_BREAKER_COOLDOWN", "--breaker-cooldown", runtime=True),
    Setting(
        "settings_refresh_seconds", "float", "VIVIFIED_SETTINGS_REFRESH_SECONDS", "--settings-refresh",
    ),
    Setting("audit_writers", "str", "VIVIFIED_AUDIT_WRITERS", "--audit-writers", ("single", "shared")),
    Setting("audit_durability", "str", "VIVIFIED_AUDIT_DURABILITY", "--audit-durability", ("group", "fsync")),
    Setting("audit_sync_interval", "float", "VIVIFIED_AUDIT_SYNC_INTERVAL", "--audit-sync-interval"),
    Setting(
        "registry_sync_bound_seconds", "float", "VIVIFIED_REGISTRY_SYNC_BOUND_SECONDS", "--registry-sync-bound",
    ),
    Setting("storage_backend", "str", "VIVIFIED_STORAGE_BACKEND", "--storage-backend", ("directory", "database")),
    Setting("storage_max_object_bytes", "int", "VIVIFIED_STORAGE_MAX_OBJECT_BYTES", "--storage-max-object-bytes"),
    Setting("storage_quota_bytes", "int", "VIVIFIED_STORAGE_QUOTA_BYTES", "--storage-quota-bytes"),
    Setting("secrets_key_file", "path", "VIVIFIED_SECRETS_KEY_FILE", "--secrets-key-file"),
    Setting("secrets_key", "secret", "VIVIFIED_SECRETS_KEY", "(environment only)", in_file=False),
)
BY_KEY = {s.key: s for s in SETTINGS}
RUNTIME_KEYS = tuple(s.key for s in SETTINGS if s.runtime)


@dataclass(frozen=True)
class Resolved:
    """One setting's value (already typed) and where it came from."""

    setting: Setting
    value: Any
    source: str


_TYPE_WORDS = {"str": "a string", "url": "a string", "secret": "a string", "int": "an integer", "float": "a number",
               "path": "a path (string)", "paths3": "a list of three paths"}


def convert(setting: Setting, raw: object, where: str, base: pathlib.Path | None = None) -> Any:
    """Type-check and convert one value; `where` names its origin in the message.
    A file (`base` given) types its values, so a quoted number there is refused;
    its relative paths are taken from the file's directory."""
    kind = setting.kind
    text = isinstance(raw, str)
    try:
        if kind in ("str", "url", "secret") and text:
            value: Any = raw
        # Numeric text counts only outside a file; spelled out inline so mypy narrows `raw`.
        elif kind == "int" and not isinstance(raw, bool) and (
            isinstance(raw, int) or (isinstance(raw, str) and base is None)
        ):
            value = int(raw)
        elif kind == "float" and not isinstance(raw, bool) and (
            isinstance(raw, (int, float)) or (isinstance(raw, str) and base is None)
        ):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
        elif kind == "path" and (text or isinstance(raw, pathlib.Path)):
            value = _path(str(raw), base)
        elif kind == "paths3" and isinstance(raw, (list, tuple)) and len(raw) == 3 and all(
            isinstance(p, (str, pathlib.Path)) for p in raw
        ):
            value = tuple(_path(str(p), base) for p in raw)
        else:
            raise ValueError
    except ValueError:
        raise SettingsError(f"{where}: {setting.key} must be {_TYPE_WORDS[kind]}, got {raw!r}") from None
    if setting.choices and value not in setting.choices:
        raise SettingsError(f"{where}: {setting.key} must be one of {', '.join(setting.choices)}, got {value!r}")
    return value


def _path(text: str, base: pathlib.Path | None) -> pathlib.Path:
    if not text:
        raise ValueError
    path = pathlib.Path(text)
    return base / path if base is not None and not path.is_absolute() else path


def resolve(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    file_values: Mapping[str, object],
    file_path: pathlib.Path | None,
) -> dict[str, Resolved]:
    """Every setting that is set somewhere, at its highest-precedence source.
    Settings left at their built-in default are absent."""
    resolved: dict[str, Resolved] = {}
    base = file_path.parent.absolute() if file_path is not None else None
    for setting in SETTINGS:
        flag = getattr(args, setting.key, None)
        if flag is not None:
            resolved[setting.key] = Resolved(setting, convert(setting, flag, setting.flag), "flag")
        elif setting.env is not None and environ.get(setting.env) is not None:
            value = convert(setting, environ[setting.env], setting.env)
            resolved[setting.key] = Resolved(setting, value, f"env:{setting.env}")
        elif setting.key in file_values:
            value = convert(setting, file_values[setting.key], f"config file {file_path}", base)
            resolved[setting.key] = Resolved(setting, value, f"file:{file_path}")
    return resolved
