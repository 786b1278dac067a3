"""Command-line flags, `VIVIFIED_*` environment and the config file → CoreConfig,
read once here (precedence in `vivified.core.settings`).

An unknown `VIVIFIED_*` variable or config file key is refused, so a typo
never silently leaves a setting at its default."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from dataclasses import replace

from vivified.core.chain import ConcurrencyConfig, RateLimitConfig
from vivified.core.cli._config_file import config_file_path, load_config_file
from vivified.core.config import CAPaths, CoreConfig
from vivified.core.egress import load_egress_config
from vivified.core.events import EventsConfig
from vivified.core.gateway import GatewayConfig
from vivified.core.settings import (
    SETTINGS,
    Resolved,
    SettingsError,
    burst_for,
    resolve,
)

# Variables of the core, and the ones `vivified up` hands to plugin processes.
CORE_VARIABLES = frozenset(s.env for s in SETTINGS if s.env is not None) | {"VIVIFIED_CONFIG_FILE"}
CLIENT_VARIABLES = frozenset({"VIVIFIED_CORE_ADDRESS", "VIVIFIED_API_KEY"})
PLUGIN_VARIABLES = frozenset({"VIVIFIED_MANIFEST", "VIVIFIED_JOIN_TOKEN", "VIVIFIED_CA_FILE", "VIVIFIED_PLUGIN_DATA_DIR"})
DEFAULT_DATA_DIR = pathlib.Path(".vivified")

__all__ = ["SettingsError", "add_core_flags", "check_environment", "core_config", "data_dir", "resolved_settings"]


def check_environment(environ: Mapping[str, str]) -> None:
    known = CORE_VARIABLES | CLIENT_VARIABLES | PLUGIN_VARIABLES
    unknown = sorted(k for k in environ if k.startswith("VIVIFIED_") and k not in known)
    if unknown:
        raise SettingsError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def add_core_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML config file (or $VIVIFIED_CONFIG_FILE); environment and flags override it"
    )
    parser.add_argument("--profile", choices=["development", "production"], help="default: development")
    parser.add_argument("--listen", dest="listen_address", metavar="HOST:PORT", help="mTLS port (default 127.0.0.1:7443)")
    parser.add_argument(
        "--bootstrap", dest="bootstrap_address", metavar="HOST:PORT", help="registration port (default 127.0.0.1:7444)"
    )
    parser.add_argument("--metrics", dest="metrics_address", metavar="HOST:PORT", help="default 127.0.0.1:9464")
    parser.add_argument("--trust-domain", dest="trust_domain", help="SPIFFE trust domain (default vivified.local)")
    parser.add_argument("--database-url", dest="database_url", help="SQLAlchemy URL (default SQLite in the data dir)")
    parser.add_argument("--policy-file", dest="policy_file", type=pathlib.Path, help="JSON policy rules")
    parser.add_argument("--leaf-ttl", dest="leaf_ttl_seconds", type=int, metavar="SECONDS", help="plugin cert lifetime")
    parser.add_argument(
        "--heartbeat-interval", dest="heartbeat_interval_seconds", type=float, metavar="SECONDS", help="default 5"
    )
    parser.add_argument(
        "--egress-config", dest="egress_config", type=pathlib.Path, metavar="FILE",
        help="egress proxy limits, allow ranges, credentials (JSON)",
    )
    parser.add_argument(
        "--ca-files",
        nargs=3,
        type=pathlib.Path,
        metavar=("ROOT_CERT", "ISSUING_CERT", "ISSUING_KEY"),
        help="use this CA instead of creating one in the data dir (key file must be mode 0600)",
    )
    events = parser.add_argument_group("event bus")
    events.add_argument(
        "--redis-url", metavar="URL",
        help="use Redis Streams (redis://[:password@]host:port/db, or $VIVIFIED_REDIS_URL); default: embedded store",
    )
    events.add_argument("--event-ack-timeout", type=float, metavar="SECONDS", help="redeliver after (default 30)")
    events.add_argument("--event-max-attempts", type=int, metavar="N", help="then dead-letter (default 5)")
    events.add_argument(
        "--event-dedupe-window", type=float, metavar="SECONDS", help="republished event ids ignored within (default 86400)"
    )
    events.add_argument(
        "--event-max-backlog", type=int, metavar="N", help="unacknowledged events kept per subscription (default 100000)"
    )
    events.add_argument("--event-publish-rate", type=float, metavar="PER_SECOND", help="per plugin (default 2000)")
    events.add_argument(
        "--event-max-dead-letters", type=int, metavar="N",
        help="dead letters kept per subscription; the oldest beyond go, audited and alerted (default 10000)",
    )
    events.add_argument(
        "--event-max-subscriptions", type=int, metavar="N", help="durable subscriptions per plugin (default 32)"
    )
    parser.add_argument(
        "--call-rate", type=float, metavar="PER_SECOND",
        help="calls per second each principal may make, burst twice that (default 500, burst 1000)",
    )
    parser.add_argument(
        "--max-streams", type=int, metavar="N",
        help="streams (Subscribe, PublishStream, WatchMyConfig, StreamFetch, ...) each principal may hold open "
        "over all its connections (default 256)",
    )
    parser.add_argument(
        "--max-calls", type=int, metavar="N",
        help="unary calls each principal may have in flight over all its connections (default 256)",
    )
    parser.add_argument(
        "--max-connections", type=int, metavar="N",
        help="connections the core holds at once over both ports; more are closed on accept (default 1000, "
        "keep below ulimit -n)",
    )
    parser.add_argument(
        "--handshake-timeout", dest="handshake_timeout_seconds", type=float, metavar="SECONDS",
        help="close a connection that has not finished its TLS/HTTP/2 handshake by then (default 10)",
    )
    parser.add_argument(
        "--init-timeout", dest="init_timeout_seconds", type=float, metavar="SECONDS",
        help="how long each attempt to reach a new plugin's Init keeps trying; a plugin whose Init failed is "
        "routed nothing and Init is retried with backoff (default 15)",
    )
    parser.add_argument(
        "--max-call-deadline", type=float, metavar="SECONDS", help="cap on operator-lane call deadlines (default 30)"
    )
    parser.add_argument(
        "--breaker-cooldown", type=float, metavar="SECONDS", help="operator-lane circuit open time (default 5)"
    )
    parser.add_argument(
        "--settings-refresh", dest="settings_refresh_seconds", type=float, metavar="SECONDS",
        help="how often the core re-reads runtime overrides other replicas stored (default 3)",
    )
    audit = parser.add_argument_group("audit log")
    audit.add_argument(
        "--audit-writers", choices=["single", "shared"],
        help="single (default): records after a clean stop's final checkpoint stop the next start as tampering; "
        "shared: several replicas append to one chain (one PostgreSQL), so such records are chain-checked and "
        "recorded as unanchored",
    )
    audit.add_argument(
        "--audit-durability", choices=["group", "fsync"],
        help="group (default): an answer leaves once its record is committed and handed to the OS (survives a "
        "kill -9 of the core), fsynced within --audit-sync-interval (a power loss loses at most that window); "
        "fsync: every answer waits for the fsync covering its record",
    )
    audit.add_argument(
        "--audit-sync-interval", dest="audit_sync_interval", type=float, metavar="SECONDS",
        help="group mode: records are fsynced within this (default 0.01, between 0.001 and 1)",
    )
    audit.add_argument(
        "--accept-audit-tampering", dest="accept_audit_tampering", type=int, metavar="SEQ",
        help="this run only: start although the audit tail check names SEQ as its first bad sequence; "
        "recorded as the first audit record and raised as a SecurityAlert",
    )
    parser.add_argument(
        "--registry-sync-bound", dest="registry_sync_bound_seconds", type=float, metavar="SECONDS",
        help="plugin status and revocations from other replicas apply here within this; past it without "
        "reading them the core refuses plugin calls (default 1)",
    )
    storage = parser.add_argument_group("object store")
    storage.add_argument(
        "--storage-backend", choices=["directory", "database"],
        help="directory (default): encrypted objects under <data-dir>/objects, for one core; database: in the "
        "core's database (PostgreSQL for several replicas)",
    )
    storage.add_argument(
        "--storage-max-object-bytes", dest="storage_max_object_bytes", type=int, metavar="BYTES",
        help="the largest object a plugin may store (default 67108864, 64 MiB)",
    )
    storage.add_argument(
        "--storage-quota-bytes", dest="storage_quota_bytes", type=int, metavar="BYTES",
        help="bytes of content each plugin may keep (default 1073741824, 1 GiB)",
    )
    parser.add_argument(
        "--secrets-key-file", type=pathlib.Path, metavar="FILE",
        help="keys sealing secret plugin config values, mode 0600 (default <data-dir>/config/secrets.key, created); "
        "$VIVIFIED_SECRETS_KEY wins over it",
    )


_EVENT_FIELDS = {
    "event_ack_timeout": "ack_timeout_seconds",
    "event_max_attempts": "max_attempts",
    "event_dedupe_window": "dedupe_window_seconds",
    "event_max_backlog": "max_backlog",
    "event_publish_rate": "publish_rate",
    "event_max_dead_letters": "max_dead_letters",
    "event_max_subscriptions": "max_subscriptions_per_plugin",
}
_CORE_FIELDS = (
    "profile", "listen_address", "bootstrap_address", "metrics_address", "trust_domain", "database_url",
    "policy_file", "leaf_ttl_seconds", "heartbeat_interval_seconds", "secrets_key_file", "secrets_key",
    "settings_refresh_seconds", "audit_writers", "audit_durability", "audit_sync_interval",
    "registry_sync_bound_seconds", "max_connections", "handshake_timeout_seconds", "init_timeout_seconds",
    "storage_backend", "storage_max_object_bytes", "storage_quota_bytes",
)


def _events_config(values: Mapping[str, object]) -> EventsConfig:
    fields: dict[str, object] = {field: values[key] for key, field in _EVENT_FIELDS.items() if key in values}
    if "publish_rate" in fields:
        fields["publish_burst"] = burst_for(float(fields["publish_rate"]))  # type: ignore[arg-type]
    redis_url = values.get("redis_url")
    if redis_url is not None:
        if not str(redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("redis_url (--redis-url / VIVIFIED_REDIS_URL) must start with redis://, rediss:// or unix://")
        fields["redis_url"] = redis_url
    return EventsConfig(**fields)  # type: ignore[arg-type]


def data_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> pathlib.Path:
    """The data dir of a client command (flag, then variable, then the default)."""
    value = getattr(args, "data_dir", None) or environ.get("VIVIFIED_DATA_DIR")
    return pathlib.Path(value) if value else DEFAULT_DATA_DIR


def resolved_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Resolved]:
    """Every setting given somewhere, with its source; the file is read here."""
    check_environment(environ)
    path = config_file_path(args, environ)
    file_values = load_config_file(path) if path is not None else {}
    return resolve(args, environ, file_values, path)


def build_core_config(resolved: Mapping[str, Resolved]) -> CoreConfig:
    values = {key: r.value for key, r in resolved.items()}
    try:
        core: dict[str, object] = {field: values[field] for field in _CORE_FIELDS if field in values}
        gateway = GatewayConfig()
        if "max_call_deadline" in values:
            gateway = replace(gateway, max_deadline_seconds=values["max_call_deadline"])
        if "breaker_cooldown" in values:
            gateway = replace(gateway, breaker_cooldown_seconds=values["breaker_cooldown"])
        if "egress_config" in values:
            core["egress"] = load_egress_config(pathlib.Path(str(values["egress_config"])))
        core["events"] = _events_config(values)
        if "call_rate" in values:
            rate = float(values["call_rate"])
            if rate <= 0:
                raise SettingsError("call_rate (--call-rate / VIVIFIED_CALL_RATE) must be positive")
            core["rate_limit"] = RateLimitConfig(rate_per_second=rate, burst=burst_for(rate))
        caps = {key: values[key] for key in ("max_streams", "max_calls") if key in values}
        if caps:
            core["concurrency"] = ConcurrencyConfig(**caps)
        if "ca_files" in values:
            core["ca_paths"] = CAPaths(*values["ca_files"])
        directory = values.get("data_dir", DEFAULT_DATA_DIR)
        sources = tuple((key, r.source) for key, r in resolved.items())
        return CoreConfig(data_dir=directory, gateway=gateway, setting_sources=sources, **core)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def core_config(args: argparse.Namespace, environ: Mapping[str, str]) -> CoreConfig:
    """Flags win over the environment, which wins over the config file, which
    wins over built-in defaults. `--accept-audit-tampering` is a flag of one
    run, never a setting a file or the environment could keep."""
    config = build_core_config(resolved_settings(args, environ))
    accept = getattr(args, "accept_audit_tampering", None)
    return config if accept is None else replace(config, accept_audit_tampering=accept)
