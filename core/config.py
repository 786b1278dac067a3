"""Typed configuration of the core. The environment and flags are read once, at
the edge (the CLI); everything below receives these frozen objects.

The defaults, bounds and choices of the fields a setting sets come from the
settings table (`vivified.core.settings.SETTINGS`), the one declaration of
each setting; the fields without a row are fixed here."""

from __future__ import annotations

import pathlib
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
    check_fields,
    component_defaults,
    default,
)

__all__ = ["AUDIT_WRITERS", "MAX_LEAF_TTL_SECONDS", "PROFILES", "CAPaths", "CoreConfig"]


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs to start."""

    data_dir: pathlib.Path
    """Keys, certificates, the SQLite database and audit checkpoints live here."""
    profile: str = default("profile")
    """`development` serves reflection; `production` does not."""
    listen_address: str = default("listen_address")
    """mTLS port for plugins and operators (client certificate required)."""
    bootstrap_address: str = default("bootstrap_address")
    """Server-authenticated TLS port where plugins register with a join token."""
    plugin_socket_dir: pathlib.Path | None = default("plugin_socket_dir")
    """Where the core also serves its two ports as Unix sockets for sandboxed plugins (None: not)."""
    metrics_address: str = default("metrics_address")
    """Prometheus endpoint."""
    trust_domain: str = default("trust_domain")
    """SPIFFE trust domain of every identity the core issues."""
    database_url: str | None = default("database_url")
    """SQLAlchemy URL; default: SQLite file `vivified.db` in the data dir."""
    policy_file: pathlib.Path | None = default("policy_file")
    """Policy rules (JSON) replacing the packaged rules."""
    ca_paths: CAPaths | None = None
    """Bring-your-own CA files; default: created in `<data_dir>/ca`."""
    leaf_ttl_seconds: int = default("leaf_ttl_seconds")
    """Lifetime of a plugin certificate."""
    join_token_ttl_seconds: int = 900
    """Default lifetime of a join token."""
    heartbeat_interval_seconds: float = default("heartbeat_interval_seconds")
    """How often plugins must heartbeat."""
    heartbeat_misses: int = 3
    """Missed heartbeats after which a plugin is unhealthy."""
    init_timeout_seconds: float = default("init_timeout_seconds")
    """How long one attempt to reach a new plugin's Init keeps trying; after a
    failed attempt the core retries Init with backoff, routing nothing to it."""
    audit_checkpoint_seconds: float = 10.0
    """How often a signed audit checkpoint is written."""
    audit_writers: str = default("audit_writers")
    """`single`: this core is the only writer of its audit chain, so records
    after the final checkpoint of a clean stop are tampering and stop the next
    start. `shared`: several core replicas append to one chain (one PostgreSQL),
    each anchoring it in its own checkpoint file, so records after this core's
    final checkpoint may be another replica's: they are chain-checked at start
    and named as unanchored instead."""
    audit_durability: str = default("audit_durability")
    """When an answer may leave relative to its audit record: `group` once the
    record is committed and handed to the OS, fsynced within
    `audit_sync_interval`; `fsync` once the fsync covering it is done."""
    audit_sync_interval: float = default("audit_sync_interval")
    """Group mode's bound (seconds) from commit to fsync: a power loss loses at
    most the records of this window (a kill -9 of the core loses none)."""
    audit_watch_buffer: int = default("audit_watch_buffer")
    """Records buffered per live-feed watcher (`WatchAuditRecords`); a watcher
    that falls this far behind is cut off (SUBSCRIBER_TOO_SLOW)."""
    accept_audit_tampering: int | None = None
    """Start although the audit tail's start-up check names this first bad
    sequence (`--accept-audit-tampering SEQ`, for this run only): the
    acceptance is the first audit record and is raised as a SecurityAlert."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request or response message."""
    max_connections: int = default("max_connections")
    """Connections the core's server holds at once, over both ports
    (`grpc.max_allowed_incoming_connections`); one more is closed as it is
    accepted. Keep it below the process's open-file limit (`ulimit -n`)."""
    handshake_timeout_seconds: float = default("handshake_timeout_seconds")
    """A connection that has not completed its TLS and HTTP/2 handshake by
    then is closed (`grpc.server_handshake_timeout_ms`)."""
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
    secrets_key_file: pathlib.Path | None = default("secrets_key_file")
    """Key-encryption keys for secret plugin config values (one base64 32-byte key
    per line, first one encrypts, mode 0600); default `<data_dir>/config/secrets.key`,
    created on first start."""
    secrets_key: str | None = field(default=default("secrets_key"), repr=False)
    """`VIVIFIED_SECRETS_KEY` (comma-separated base64 keys); wins over the key file."""
    settings_refresh_seconds: float = default("settings_refresh_seconds")
    """How often a running core re-reads the runtime overrides stored in the
    database, so a change stored through another replica applies here within
    this long (a change stored through this core applies at once)."""
    registry_sync_bound_seconds: float = default("registry_sync_bound_seconds")
    """The longest a replica acts on its registry view (plugin status, health,
    revoked certificates) without having read the changes other replicas
    committed: changes apply everywhere within it, and past it the replica
    refuses plugin and operator calls (REGISTRY_STALE) until it reads them."""
    storage_backend: str = default("storage_backend")
    """Where the object store keeps its (encrypted) objects: `directory`
    (`<data_dir>/objects`, one core) or `database` (the core's database, for
    several replicas on one PostgreSQL)."""
    storage_max_object_bytes: int = default("storage_max_object_bytes")
    """The largest object a plugin may store."""
    storage_quota_bytes: int = default("storage_quota_bytes")
    """The bytes of content each plugin may keep in the object store."""
    setting_sources: tuple[tuple[str, str], ...] = ()
    """(key, source) of each setting not at its built-in default: `file:<path>`,
    `env:<VARIABLE>`, `flag`, or `database (set by <actor>: <reason>)` for a
    runtime override stored in the database that the core applies."""

    def __post_init__(self) -> None:
        check_fields(self)  # the bounds and choices of every setting's row
        if self.heartbeat_misses < 1:
            raise ValueError("heartbeat interval must be positive and misses at least 1")
