"""The core's settings as one table, and where each effective value came from.

Each row of `SETTINGS` is the whole declaration of one setting: its key (the
config file key and argparse dest), type, default, bounds or choices, help,
flag, `VIVIFIED_*` variable, whether administrators may override it at
runtime, and the `CoreConfig` field it sets. Everything else is generated
from the rows: the command-line flags (`vivified.core.cli.add_core_flags`,
whose help shows the row's default), the environment and config file parsing
(`resolve`), `vivified config show`, the checks of runtime overrides, the
getters and setters of each value in a `CoreConfig` (`_fields`),
CoreConfig's own defaults and range checks, and the CoreConfig fields of the
rows that set a top-level field (`_config_fields.py`, written by `_generate`:
run `python -m vivified.core.settings._generate` after changing a row; a test
fails while the file is stale). A new setting is one row here; a row that
sets a field of a component's config (`events.max_attempts`) names a field of
that component, which the component declares. A test sets each row through
its flag and its variable and fails unless the value reaches the row's field.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vivified.core.audit import DURABILITY_MODES, MAX_SYNC_INTERVAL, MIN_SYNC_INTERVAL
from vivified.core.data_dir import DEFAULT_DATA_DIR
from vivified.core.egress import load_egress_config

PROFILES = ("development", "production")
AUDIT_WRITERS = ("single", "shared")
STORAGE_BACKENDS = ("directory", "database")
MAX_LEAF_TTL_SECONDS = 24 * 3600


class SettingsError(Exception):
    """A flag, variable, config file entry or override the core cannot accept; the message says which."""


def burst_for(rate: float) -> int:
    """A token bucket's burst for a configured rate: two seconds' worth."""
    return max(1, int(2 * rate))


@dataclass(frozen=True)
class CAPaths:
    """Load the CA from these files instead of creating it in the data dir
    (`--ca-files`; `vivified.core.config` re-exports it)."""

    root_certificate: pathlib.Path
    issuing_certificate: pathlib.Path
    issuing_key: pathlib.Path


def _ca_paths(paths: tuple[pathlib.Path, ...]) -> object:
    return CAPaths(*paths)


@dataclass(frozen=True)
class Setting:
    """One core setting, declared once."""

    key: str
    """Config file key, argparse dest and the name `config show` prints."""
    kind: str
    """`str`, `int`, `float`, `path`, `url` (may hold a password: masked when shown),
    `secret` (always masked when shown) or `paths3`."""
    default: Any
    """The built-in default; CoreConfig's defaults are read from here."""
    field: str
    """The CoreConfig field it sets, dotted into a component's config (`events.max_attempts`)."""
    help: str
    """The flag's help; the default is appended from `default` / `default_text`."""
    env: str | None
    flag: str | None
    """None for a setting only the environment may give (the secrets key itself)."""
    metavar: str | tuple[str, ...] | None = None
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """True when the value must be above `low` rather than at least `low`."""
    runtime: bool = False
    """True for a setting administrators may override in the database: tuning
    that is safe to change on a running installation, never bootstrap or
    security-critical settings (addresses, data dir, database, trust domain,
    CA, secrets, profile, policy or egress files)."""
    in_file: bool = True
    """False for a key that must not sit in the config file (the secrets key itself)."""
    group: str = ""
    """The `--help` section of its flag (none: the command's own options)."""
    default_text: str | None = None
    """How `--help` names a default that is not a plain value (e.g. `SQLite in the data dir`)."""
    burst: str | None = None
    """A sibling field set to `burst_for(value)` with it (a token bucket's burst)."""
    prefixes: tuple[str, ...] = ()
    """The value must start with one of these (a URL's schemes)."""
    build: Callable[[Any], object] | None = None
    """Turns the value into what the config field holds (a loaded file, a
    CAPaths); `config show` then prints the value as given."""
    doc: str = ""
    """The docstring of the CoreConfig field it generates (`help` when empty)."""
    required: bool = False
    """CoreConfig has no default for its field: every caller names it (the data dir)."""

    def problem(self, value: Any) -> str | None:
        """What is wrong with a typed value (`must be ...`), or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.prefixes and not str(value).startswith(self.prefixes):
            return f"must start with {', '.join(self.prefixes[:-1])} or {self.prefixes[-1]}"
        if self.low is None and self.high is None or not isinstance(value, (int, float)):
            return None
        low, high = self.low, self.high
        upto = f" and at most {high:g}" if high is not None else ""
        if low is not None and (value <= low if self.low_open else value < low):
            if self.low_open:
                return ("must be positive" if low == 0 else f"must be greater than {low:g}") + upto
            return f"must be at least {low:g}{upto}"
        if high is not None and value > high:
            if low is None:
                return f"must be at most {high:g}"
            return f"must be in ({low:g}, {high:g}]" if self.low_open else f"must be between {low:g} and {high:g}"
        return None

    @property
    def default_help(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


_S, _P = "SECONDS", "PER_SECOND"
_EVENTS, _AUDIT, _STORAGE = "event bus", "audit log", "object store"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "path",
        DEFAULT_DATA_DIR,
        "data_dir",
        "keys, database and audit checkpoints",
        "VIVIFIED_DATA_DIR",
        "--data-dir",
        "DIR",
        default_text="./.vivified",
        required=True,
        doc="Keys, certificates, the SQLite database and audit checkpoints live here.",
    ),
    Setting(
        "profile",
        "str",
        "development",
        "profile",
        "development serves reflection; production does not",
        "VIVIFIED_PROFILE",
        "--profile",
        choices=PROFILES,
        doc="`development` serves reflection; `production` does not.",
    ),
    Setting(
        "listen_address",
        "str",
        "127.0.0.1:7443",
        "listen_address",
        "mTLS port",
        "VIVIFIED_LISTEN_ADDRESS",
        "--listen",
        "HOST:PORT",
        doc="mTLS port for plugins and operators (client certificate required).",
    ),
    Setting(
        "bootstrap_address",
        "str",
        "127.0.0.1:7444",
        "bootstrap_address",
        "registration port",
        "VIVIFIED_BOOTSTRAP_ADDRESS",
        "--bootstrap",
        "HOST:PORT",
        doc="Server-authenticated TLS port where plugins register with a join token.",
    ),
    Setting(
        "plugin_socket_dir",
        "path",
        None,
        "plugin_socket_dir",
        "also serve the mTLS and bootstrap ports as the Unix sockets DIR/core.sock and DIR/bootstrap.sock, "
        "for sandboxed plugins (each then serves unix:DIR/plugins/<plugin-id>/plugin.sock, the only Unix "
        "endpoint the registry accepts for it)",
        "VIVIFIED_PLUGIN_SOCKET_DIR",
        "--plugin-socket-dir",
        "DIR",
        default_text="off",
        doc="Where the core also serves its two ports as Unix sockets for sandboxed plugins (None: not).",
    ),
    Setting(
        "metrics_address",
        "str",
        "127.0.0.1:9464",
        "metrics_address",
        "Prometheus endpoint",
        "VIVIFIED_METRICS_ADDRESS",
        "--metrics",
        "HOST:PORT",
        doc="Prometheus endpoint.",
    ),
    Setting(
        "trust_domain",
        "str",
        "vivified.local",
        "trust_domain",
        "SPIFFE trust domain",
        "VIVIFIED_TRUST_DOMAIN",
        "--trust-domain",
        doc="SPIFFE trust domain of every identity the core issues.",
    ),
    Setting(
        "database_url",
        "url",
        None,
        "database_url",
        "SQLAlchemy URL",
        "VIVIFIED_DATABASE_URL",
        "--database-url",
        "URL",
        default_text="SQLite in the data dir",
        doc="SQLAlchemy URL; default: SQLite file `vivified.db` in the data dir.",
    ),
    Setting(
        "policy_file",
        "path",
        None,
        "policy_file",
        "JSON policy rules replacing the packaged rules",
        "VIVIFIED_POLICY_FILE",
        "--policy-file",
        "FILE",
        default_text="the packaged rules",
        doc="Policy rules (JSON) replacing the packaged rules.",
    ),
    Setting(
        "leaf_ttl_seconds",
        "int",
        3600,
        "leaf_ttl_seconds",
        "plugin certificate lifetime",
        # At most one day: short-lived plugin certificates are what bounds a stolen key.
        "VIVIFIED_LEAF_TTL_SECONDS",
        "--leaf-ttl",
        _S,
        low=10,
        high=MAX_LEAF_TTL_SECONDS,
        runtime=True,
        doc="Lifetime of a plugin certificate.",
    ),
    Setting(
        "heartbeat_interval_seconds",
        "float",
        5.0,
        "heartbeat_interval_seconds",
        "how often plugins must heartbeat",
        "VIVIFIED_HEARTBEAT_INTERVAL_SECONDS",
        "--heartbeat-interval",
        _S,
        low=0,
        low_open=True,
        runtime=True,
        doc="How often plugins must heartbeat.",
    ),
    Setting(
        "egress_config",
        "path",
        None,
        "egress",
        "egress proxy limits, allow ranges, credentials (JSON)",
        "VIVIFIED_EGRESS_CONFIG",
        "--egress-config",
        "FILE",
        default_text="the built-in production limits",
        build=load_egress_config,
    ),
    Setting(
        "ca_files",
        "paths3",
        None,
        "ca_paths",
        "use this CA instead of creating one in the data dir (key file must be mode 0600)",
        None,
        "--ca-files",
        ("ROOT_CERT", "ISSUING_CERT", "ISSUING_KEY"),
        default_text="<data-dir>/ca",
        build=_ca_paths,
    ),
    Setting(
        "redis_url",
        "url",
        None,
        "events.redis_url",
        "use Redis Streams (redis://[:password@]host:port/db, rediss:// or unix://)",
        "VIVIFIED_REDIS_URL",
        "--redis-url",
        "URL",
        group=_EVENTS,
        default_text="embedded store",
        prefixes=("redis://", "rediss://", "unix://"),
    ),
    Setting(
        "event_ack_timeout",
        "float",
        30.0,
        "events.ack_timeout_seconds",
        "redeliver after",
        "VIVIFIED_EVENT_ACK_TIMEOUT",
        "--event-ack-timeout",
        _S,
        low=0,
        low_open=True,
        runtime=True,
        group=_EVENTS,
    ),
    Setting(
        "event_max_attempts",
        "int",
        5,
        "events.max_attempts",
        "then dead-letter",
        "VIVIFIED_EVENT_MAX_ATTEMPTS",
        "--event-max-attempts",
        "N",
        low=1,
        runtime=True,
        group=_EVENTS,
    ),
    Setting(
        "event_dedupe_window",
        "float",
        86400.0,
        "events.dedupe_window_seconds",
        "republished event ids ignored within",
        "VIVIFIED_EVENT_DEDUPE_WINDOW",
        "--event-dedupe-window",
        _S,
        low=0,
        runtime=True,
        group=_EVENTS,
    ),
    Setting(
        "event_max_backlog",
        "int",
        100_000,
        "events.max_backlog",
        "unacknowledged events kept per subscription",
        "VIVIFIED_EVENT_MAX_BACKLOG",
        "--event-max-backlog",
        "N",
        low=1,
        runtime=True,
        group=_EVENTS,
    ),
    Setting(
        "event_publish_rate",
        "float",
        2000.0,
        "events.publish_rate",
        "per plugin, burst twice that",
        "VIVIFIED_EVENT_PUBLISH_RATE",
        "--event-publish-rate",
        _P,
        low=0,
        low_open=True,
        runtime=True,
        group=_EVENTS,
        burst="events.publish_burst",
    ),
    Setting(
        "event_max_dead_letters",
        "int",
        10_000,
        "events.max_dead_letters",
        "dead letters kept per subscription; the oldest beyond go, audited and alerted",
        "VIVIFIED_EVENT_MAX_DEAD_LETTERS",
        "--event-max-dead-letters",
        "N",
        low=1,
        group=_EVENTS,
    ),
    Setting(
        "event_max_subscriptions",
        "int",
        32,
        "events.max_subscriptions_per_plugin",
        "durable subscriptions per plugin",
        "VIVIFIED_EVENT_MAX_SUBSCRIPTIONS",
        "--event-max-subscriptions",
        "N",
        low=1,
        group=_EVENTS,
    ),
    Setting(
        "call_rate",
        "float",
        500.0,
        "rate_limit.rate_per_second",
        "calls per second each principal may make, burst twice that",
        "VIVIFIED_CALL_RATE",
        "--call-rate",
        _P,
        low=0,
        low_open=True,
        runtime=True,
        burst="rate_limit.burst",
    ),
    Setting(
        "max_streams",
        "int",
        256,
        "concurrency.max_streams",
        "streams (Subscribe, PublishStream, WatchMyConfig, StreamFetch, ...) each principal may hold open "
        "over all its connections",
        "VIVIFIED_MAX_STREAMS",
        "--max-streams",
        "N",
        low=1,
    ),
    Setting(
        "max_calls",
        "int",
        256,
        "concurrency.max_calls",
        "unary calls each principal may have in flight over all its connections",
        "VIVIFIED_MAX_CALLS",
        "--max-calls",
        "N",
        low=1,
    ),
    Setting(
        "max_connections",
        "int",
        1000,
        "max_connections",
        "connections the core holds at once over both ports; more are closed on accept (keep below ulimit -n)",
        "VIVIFIED_MAX_CONNECTIONS",
        "--max-connections",
        "N",
        low=1,
        doc=(
            "Connections the core's server holds at once, over both ports "
            "(`grpc.max_allowed_incoming_connections`); one more is closed as it is accepted. Keep it below "
            "the process's open-file limit (`ulimit -n`)."
        ),
    ),
    Setting(
        "handshake_timeout_seconds",
        "float",
        10.0,
        "handshake_timeout_seconds",
        "close a connection that has not finished its TLS/HTTP/2 handshake by then",
        "VIVIFIED_HANDSHAKE_TIMEOUT",
        "--handshake-timeout",
        _S,
        low=0,
        high=300,
        low_open=True,
        doc=(
            "A connection that has not completed its TLS and HTTP/2 handshake by then is closed "
            "(`grpc.server_handshake_timeout_ms`)."
        ),
    ),
    Setting(
        "init_timeout_seconds",
        "float",
        15.0,
        "init_timeout_seconds",
        "how long each attempt to reach a new plugin's Init keeps trying; a plugin whose Init failed is "
        "routed nothing and Init is retried with backoff",
        "VIVIFIED_INIT_TIMEOUT_SECONDS",
        "--init-timeout",
        _S,
        low=0,
        high=300,
        low_open=True,
        doc=(
            "How long one attempt to reach a new plugin's Init keeps trying; after a failed attempt the core "
            "retries Init with backoff, routing nothing to it."
        ),
    ),
    Setting(
        "max_call_deadline",
        "float",
        30.0,
        "gateway.max_deadline_seconds",
        "cap on operator-lane call deadlines",
        "VIVIFIED_MAX_CALL_DEADLINE",
        "--max-call-deadline",
        _S,
        low=0,
        low_open=True,
        runtime=True,
    ),
    Setting(
        "breaker_cooldown",
        "float",
        5.0,
        "gateway.breaker_cooldown_seconds",
        "operator-lane circuit open time",
        "VIVIFIED_BREAKER_COOLDOWN",
        "--breaker-cooldown",
        _S,
        low=0,
        runtime=True,
    ),
    Setting(
        "settings_refresh_seconds",
        "float",
        3.0,
        "settings_refresh_seconds",
        "how often the core re-reads runtime overrides other replicas stored",
        "VIVIFIED_SETTINGS_REFRESH_SECONDS",
        "--settings-refresh",
        _S,
        low=0.1,
        high=300,
        doc=(
            "How often a running core re-reads the runtime overrides stored in the database, so a change "
            "stored through another replica applies here within this long (a change stored through this core "
            "applies at once)."
        ),
    ),
    Setting(
        "audit_writers",
        "str",
        "single",
        "audit_writers",
        "single: records after a clean stop's final checkpoint stop the next start as tampering; "
        "shared: several replicas append to one chain (one PostgreSQL), so such records are chain-checked and "
        "recorded as unanchored",
        "VIVIFIED_AUDIT_WRITERS",
        "--audit-writers",
        choices=AUDIT_WRITERS,
        group=_AUDIT,
        doc=(
            "`single`: this core is the only writer of its audit chain, so records after the final checkpoint"
            " of a clean stop are tampering and stop the next start. `shared`: several core replicas append "
            "to one chain (one PostgreSQL), each anchoring it in its own checkpoint file, so records after "
            "this core's final checkpoint may be another replica's: they are chain-checked at start and named"
            " as unanchored instead."
        ),
    ),
    Setting(
        "audit_durability",
        "str",
        "group",
        "audit_durability",
        "group: an answer leaves once its record is committed and handed to the OS (survives a kill -9 of "
        "the core), fsynced within --audit-sync-interval (a power loss loses at most that window); "
        "fsync: every answer waits for the fsync covering its record",
        "VIVIFIED_AUDIT_DURABILITY",
        "--audit-durability",
        choices=DURABILITY_MODES,
        group=_AUDIT,
        doc=(
            "When an answer may leave relative to its audit record: `group` once the record is committed and "
            "handed to the OS, fsynced within `audit_sync_interval`; `fsync` once the fsync covering it is "
            "done."
        ),
    ),
    Setting(
        "audit_sync_interval",
        "float",
        0.010,
        "audit_sync_interval",
        "group mode: records are fsynced within this",
        "VIVIFIED_AUDIT_SYNC_INTERVAL",
        "--audit-sync-interval",
        _S,
        low=MIN_SYNC_INTERVAL,
        high=MAX_SYNC_INTERVAL,
        group=_AUDIT,
        doc=(
            "Group mode's bound (seconds) from commit to fsync: a power loss loses at most the records of "
            "this window (a kill -9 of the core loses none)."
        ),
    ),
    Setting(
        "audit_watch_buffer",
        "int",
        256,
        "audit_watch_buffer",
        "records buffered per live-feed watcher (WatchAuditRecords); one that falls this far behind is cut off "
        "(RESOURCE_EXHAUSTED SUBSCRIBER_TOO_SLOW) instead of growing the core's memory",
        "VIVIFIED_AUDIT_WATCH_BUFFER",
        "--audit-watch-buffer",
        "N",
        low=1,
        high=100_000,
        group=_AUDIT,
        doc=(
            "Records buffered per live-feed watcher (`WatchAuditRecords`); a watcher that falls this far "
            "behind is cut off (SUBSCRIBER_TOO_SLOW)."
        ),
    ),
    Setting(
        "registry_sync_bound_seconds",
        "float",
        1.0,
        "registry_sync_bound_seconds",
        "plugin status and revocations from other replicas apply here within this; past it without "
        "reading them the core refuses plugin calls",
        "VIVIFIED_REGISTRY_SYNC_BOUND_SECONDS",
        "--registry-sync-bound",
        _S,
        low=0.2,
        high=60,
        doc=(
            "The longest a replica acts on its registry view (plugin status, health, revoked certificates) "
            "without having read the changes other replicas committed: changes apply everywhere within it, "
            "and past it the replica refuses plugin and operator calls (REGISTRY_STALE) until it reads them."
        ),
    ),
    Setting(
        "storage_backend",
        "str",
        "directory",
        "storage_backend",
        "directory: encrypted objects under <data-dir>/objects, for one core; database: in the core's database "
        "(PostgreSQL for several replicas)",
        "VIVIFIED_STORAGE_BACKEND",
        "--storage-backend",
        choices=STORAGE_BACKENDS,
        group=_STORAGE,
        doc=(
            "Where the object store keeps its (encrypted) objects: `directory` (`<data_dir>/objects`, one "
            "core) or `database` (the core's database, for several replicas on one PostgreSQL)."
        ),
    ),
    Setting(
        "storage_max_object_bytes",
        "int",
        64 * 1024 * 1024,
        "storage_max_object_bytes",
        "the largest object a plugin may store",
        "VIVIFIED_STORAGE_MAX_OBJECT_BYTES",
        "--storage-max-object-bytes",
        "BYTES",
        low=1,
        group=_STORAGE,
        default_text="67108864, 64 MiB",
        doc="The largest object a plugin may store.",
    ),
    Setting(
        "storage_quota_bytes",
        "int",
        1024 * 1024 * 1024,
        "storage_quota_bytes",
        "bytes of content each plugin may keep",
        "VIVIFIED_STORAGE_QUOTA_BYTES",
        "--storage-quota-bytes",
        "BYTES",
        low=1,
        group=_STORAGE,
        default_text="1073741824, 1 GiB",
        doc="The bytes of content each plugin may keep in the object store.",
    ),
    Setting(
        "secrets_key_file",
        "path",
        None,
        "secrets_key_file",
        "keys sealing secret plugin config values, mode 0600; $VIVIFIED_SECRETS_KEY wins over it",
        "VIVIFIED_SECRETS_KEY_FILE",
        "--secrets-key-file",
        "FILE",
        default_text="<data-dir>/config/secrets.key, created",
        doc=(
            "Key-encryption keys for secret plugin config values (one base64 32-byte key per line, first one "
            "encrypts, mode 0600); default `<data_dir>/config/secrets.key`, created on first start."
        ),
    ),
    Setting(
        "secrets_key",
        "secret",
        None,
        "secrets_key",
        "comma-separated base64 keys sealing secret plugin config values; wins over the key file",
        "VIVIFIED_SECRETS_KEY",
        None,
        in_file=False,
        default_text="the key file",
        doc="`VIVIFIED_SECRETS_KEY` (comma-separated base64 keys); wins over the key file.",
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}
RUNTIME_KEYS = tuple(s.key for s in SETTINGS if s.runtime)


def default(key: str) -> Any:
    """The built-in default of `key`; CoreConfig's field defaults come from here."""
    return BY_KEY[key].default


@dataclass(frozen=True)
class Resolved:
    """One setting's value (already typed) and where it came from."""

    setting: Setting
    value: Any
    source: str


_TYPE_WORDS = {
    "str": "a string",
    "url": "a string",
    "secret": "a string",
    "int": "an integer",
    "float": "a number",
    "path": "a path (string)",
    "paths3": "a list of three paths",
}


def convert(setting: Setting, raw: object, where: str | None, base: pathlib.Path | None = None) -> Any:
    """Type-check and convert one value, and check it against the row's
    choices; `where` names its origin in the message (None: a flag, named
    with its variable). A file (`base` given) types its values, so a quoted
    number there is refused; its relative paths are taken from the file's
    directory. Bounds are checked where the value is set on a CoreConfig
    (`_fields.assignments`, CoreConfig's own check), whatever its layer."""
    kind = setting.kind
    named = f"{where}: {setting.key}" if where is not None else flag_origin(setting)
    text = isinstance(raw, str)
    try:
        if kind in ("str", "url", "secret") and text:
            value: Any = raw
        # Numeric text counts only outside a file; spelled out inline so mypy narrows `raw`.
        elif (
            kind == "int"
            and not isinstance(raw, bool)
            and (isinstance(raw, int) or (isinstance(raw, str) and base is None))
        ):
            value = int(raw)
        elif (
            kind == "float"
            and not isinstance(raw, bool)
            and (isinstance(raw, (int, float)) or (isinstance(raw, str) and base is None))
        ):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
        elif kind == "path" and (text or isinstance(raw, pathlib.Path)):
            value = _path(str(raw), base)
        elif (
            kind == "paths3"
            and isinstance(raw, (list, tuple))
            and len(raw) == 3
            and all(isinstance(p, (str, pathlib.Path)) for p in raw)
        ):
            value = tuple(_path(str(p), base) for p in raw)
        else:
            raise ValueError
    except ValueError:
        raise SettingsError(f"{named} must be {_TYPE_WORDS[kind]}, got {raw!r}") from None
    if setting.choices and value not in setting.choices:
        raise SettingsError(f"{named} must be one of {', '.join(setting.choices)}, got {value!r}")
    return value


def _path(text: str, base: pathlib.Path | None) -> pathlib.Path:
    if not text:
        raise ValueError
    path = pathlib.Path(text)
    return base / path if base is not None and not path.is_absolute() else path


def flag_origin(setting: Setting) -> str:
    """A setting named with its flag and variable: `call_rate (--call-rate / VIVIFIED_CALL_RATE)`."""
    names = " / ".join(n for n in (setting.flag, setting.env) if n)
    return f"{setting.key} ({names})"


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
        flag = getattr(args, setting.key, None) if setting.flag is not None else None
        if flag is not None:
            resolved[setting.key] = Resolved(setting, convert(setting, flag, None), "flag")
        elif setting.env is not None and environ.get(setting.env) is not None:
            value = convert(setting, environ[setting.env], setting.env)
            resolved[setting.key] = Resolved(setting, value, f"env:{setting.env}")
        elif setting.key in file_values:
            value = convert(setting, file_values[setting.key], f"config file {file_path}", base)
            resolved[setting.key] = Resolved(setting, value, f"file:{file_path}")
    return resolved
