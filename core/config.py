"""Typed configuration of the core. The environment and flags are read once, at
the edge (the CLI); everything below receives these frozen objects.

Each setting is one row of the settings table (`vivified.core.settings.SETTINGS`),
its one declaration: the fields its rows set directly are generated from the
table (`SettingFields`, `python -m vivified.core.settings._generate`) with
their types, defaults and docstrings, and CoreConfig checks them against the
rows' bounds and choices. Declared here are the component configs rows set
fields of (their defaults from the rows too), the fields rows build (a loaded
egress file, CA paths), and the fixed fields without a row."""

from __future__ import annotations

from dataclasses import dataclass, field

from vivified.core.chain import ConcurrencyConfig, RateLimitConfig
from vivified.core.egress import EgressConfig
from vivified.core.events import EventsConfig
from vivified.core.gateway import GatewayConfig
from vivified.core.identity import IdentityConfig
from vivified.core.settings import (
    AUDIT_WRITERS,
    MAX_LEAF_TTL_SECONDS,
    PROFILES,
    CAPaths,
    SettingFields,
    check_fields,
    component_defaults,
)

__all__ = ["AUDIT_WRITERS", "MAX_LEAF_TTL_SECONDS", "PROFILES", "CAPaths", "CoreConfig"]


@dataclass(frozen=True)
class CoreConfig(SettingFields):
    """Everything the core needs to start: the settings table's fields
    (`SettingFields`, generated), then these."""

    ca_paths: CAPaths | None = None
    """Bring-your-own CA files; default: created in `<data_dir>/ca`."""
    join_token_ttl_seconds: int = 900
    """Default lifetime of a join token."""
    heartbeat_misses: int = 3
    """Missed heartbeats after which a plugin is unhealthy."""
    audit_checkpoint_seconds: float = 10.0
    """How often a signed audit checkpoint is written."""
    accept_audit_tampering: int | None = None
    """Start although the audit tail's start-up check names this first bad
    sequence (`--accept-audit-tampering SEQ`, for this run only): the
    acceptance is the first audit record and is raised as a SecurityAlert."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request or response message."""
    rate_limit: RateLimitConfig = field(default_factory=lambda: RateLimitConfig(**component_defaults("rate_limit")))
    """Per-principal rate limit."""
    concurrency: ConcurrencyConfig = field(
        default_factory=lambda: ConcurrencyConfig(**component_defaults("concurrency"))
    )
    """Per-principal caps on open streams and unary calls in flight, over all its connections."""
    gateway: GatewayConfig = field(default_factory=lambda: GatewayConfig(**component_defaults("gateway")))
    """Operator lane deadlines, retries, circuit breaker and bulkhead."""
    egress: EgressConfig = field(default_factory=EgressConfig)
    """Egress proxy limits, allow ranges, credential injection, report-only plugins."""
    events: EventsConfig = field(default_factory=lambda: EventsConfig(**component_defaults("events")))
    """Event bus backend, delivery attempts, timeouts, dedupe window and backlog caps."""
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    """User sign-in: token lifetimes, sessions, lockout, password hashing cost."""
    setting_sources: tuple[tuple[str, str], ...] = ()
    """(key, source) of each setting not at its built-in default: `file:<path>`,
    `env:<VARIABLE>`, `flag`, or `database (set by <actor>: <reason>)` for a
    runtime override stored in the database that the core applies."""

    def __post_init__(self) -> None:
        check_fields(self)  # the bounds and choices of every setting's row
        if self.heartbeat_misses < 1:
            raise ValueError("heartbeat interval must be positive and misses at least 1")
