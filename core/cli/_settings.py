"""Command-line flags and `VIVIFIED_*` environment → CoreConfig, read once here.

An unknown `VIVIFIED_*` variable is refused, so a typo never silently leaves a
setting at its default."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping
from dataclasses import replace

from vivified.core.chain import RateLimitConfig
from vivified.core.config import CAPaths, CoreConfig
from vivified.core.egress import load_egress_config
from vivified.core.events import EventsConfig
from vivified.core.gateway import GatewayConfig

# Variables of the core, and the ones `vivified up` hands to plugin processes.
CORE_VARIABLES = {
    "VIVIFIED_DATA_DIR": "data_dir",
    "VIVIFIED_PROFILE": "profile",
    "VIVIFIED_LISTEN_ADDRESS": "listen_address",
    "VIVIFIED_BOOTSTRAP_ADDRESS": "bootstrap_address",
    "VIVIFIED_METRICS_ADDRESS": "metrics_address",
    "VIVIFIED_TRUST_DOMAIN": "trust_domain",
    "VIVIFIED_DATABASE_URL": "database_url",
    "VIVIFIED_POLICY_FILE": "policy_file",
    "VIVIFIED_LEAF_TTL_SECONDS": "leaf_ttl_seconds",
    "VIVIFIED_HEARTBEAT_INTERVAL_SECONDS": "heartbeat_interval_seconds",
}
CLIENT_VARIABLES = frozenset({"VIVIFIED_CORE_ADDRESS"})
EXTRA_CORE_VARIABLES = frozenset({"VIVIFIED_EGRESS_CONFIG", "VIVIFIED_REDIS_URL"})
PLUGIN_VARIABLES = frozenset({"VIVIFIED_MANIFEST", "VIVIFIED_JOIN_TOKEN", "VIVIFIED_CA_FILE"})
DEFAULT_DATA_DIR = pathlib.Path(".vivified")


class SettingsError(Exception):
    """A flag or variable the core cannot accept; the message says which."""


def check_environment(environ: Mapping[str, str]) -> None:
    known = set(CORE_VARIABLES) | CLIENT_VARIABLES | PLUGIN_VARIABLES | EXTRA_CORE_VARIABLES
    unknown = sorted(k for k in environ if k.startswith("VIVIFIED_") and k not in known)
    if unknown:
        raise SettingsError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def add_core_flags(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--call-rate", type=float, metavar="PER_SECOND",
        help="calls per second each principal may make, burst twice that (default 500, burst 1000)",
    )
    parser.add_argument(
        "--max-call-deadline", type=float, metavar="SECONDS", help="cap on operator-lane call deadlines (default 30)"
    )
    parser.add_argument(
        "--breaker-cooldown", type=float, metavar="SECONDS", help="operator-lane circuit open time (default 5)"
    )


_EVENT_FLAGS = {
    "event_ack_timeout": "ack_timeout_seconds",
    "event_max_attempts": "max_attempts",
    "event_dedupe_window": "dedupe_window_seconds",
    "event_max_backlog": "max_backlog",
    "event_publish_rate": "publish_rate",
}


def _events_config(args: argparse.Namespace, environ: Mapping[str, str]) -> EventsConfig:
    values: dict[str, object] = {
        field: getattr(args, flag) for flag, field in _EVENT_FLAGS.items() if getattr(args, flag, None) is not None
    }
    if "publish_rate" in values:
        values["publish_burst"] = max(1, int(2 * float(values["publish_rate"])))  # type: ignore[arg-type]
    redis_url = getattr(args, "redis_url", None) or environ.get("VIVIFIED_REDIS_URL")
    if redis_url is not None:
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("--redis-url / VIVIFIED_REDIS_URL must start with redis://, rediss:// or unix://")
        values["redis_url"] = redis_url
    return EventsConfig(**values)  # type: ignore[arg-type]


def data_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> pathlib.Path:
    value = getattr(args, "data_dir", None) or environ.get("VIVIFIED_DATA_DIR")
    return pathlib.Path(value) if value else DEFAULT_DATA_DIR


def core_config(args: argparse.Namespace, environ: Mapping[str, str]) -> CoreConfig:
    """Flags win over the environment, which wins over built-in defaults."""
    check_environment(environ)
    values: dict[str, object] = {}
    for variable, field in CORE_VARIABLES.items():
        if field == "data_dir":
            continue
        flag = getattr(args, field, None)
        raw: object = flag if flag is not None else environ.get(variable)
        if raw is None:
            continue
        try:
            if field in ("leaf_ttl_seconds",):
                raw = int(raw)  # type: ignore[call-overload]
            elif field in ("heartbeat_interval_seconds",):
                raw = float(raw)  # type: ignore[arg-type]
            elif field == "policy_file":
                raw = pathlib.Path(str(raw))
        except ValueError:
            raise SettingsError(f"{variable} / --{field.replace('_', '-')} must be a number, got {raw!r}") from None
        values[field] = raw
    try:
        gateway = GatewayConfig()
        if getattr(args, "max_call_deadline", None) is not None:
            gateway = replace(gateway, max_deadline_seconds=args.max_call_deadline)
        if getattr(args, "breaker_cooldown", None) is not None:
            gateway = replace(gateway, breaker_cooldown_seconds=args.breaker_cooldown)
        egress_path = getattr(args, "egress_config", None) or environ.get("VIVIFIED_EGRESS_CONFIG")
        if egress_path:
            values["egress"] = load_egress_config(pathlib.Path(egress_path))
        values["events"] = _events_config(args, environ)
        if getattr(args, "call_rate", None) is not None:
            if args.call_rate <= 0:
                raise SettingsError("--call-rate must be positive")
            values["rate_limit"] = RateLimitConfig(rate_per_second=args.call_rate, burst=max(1, int(2 * args.call_rate)))
        ca_files = getattr(args, "ca_files", None)
        if ca_files is not None:
            values["ca_paths"] = CAPaths(*ca_files)
        return CoreConfig(data_dir=data_dir(args, environ), gateway=gateway, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
