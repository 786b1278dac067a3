"""Typed configuration of the core. The environment and flags are read once, at
the edge (the CLI); everything below receives these frozen objects."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from vivified.core.audit import DURABILITY_MODES, MAX_SYNC_INTERVAL, MIN_SYNC_INTERVAL
from vivified.core.chain import ConcurrencyConfig, RateLimitConfig
from vivified.core.egress import EgressConfig
from vivified.core.events import EventsConfig
from vivified.core.gateway import GatewayConfig
from vivified.core.identity import IdentityConfig

PROFILES = ("development", "production")
AUDIT_WRITERS = ("single", "shared")
MAX_LEAF_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CAPaths:
    """Load the CA from these files instead of creating it in the data dir."""

    root_certificate: pathlib.Path
    issuing_certificate: pathlib.Path
    issuing_key: pathlib.Path


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs to start."""

    data_dir: pathlib.Path
    """Keys, certificates, the SQLite database and audit checkpoints live here."""
    profile: str = "development"
    """`development` serves reflection; `production` does not."""
    listen_address: str = "127.0.0.1:7443"
    """mTLS port for plugins and operators (client certificate required)."""
    bootstrap_address: str = "127.0.0.1:7444"
    """Server-authenticated TLS port where plugins register with a join token."""
    metrics_address: str = "127.0.0.1:9464"
    """Prometheus endpoint."""
    trust_domain: str = "vivified.local"
    """SPIFFE trust domain of every identity the core issues."""
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite file `vivified.db` in the data dir."""
    policy_file: pathlib.Path | None = None
    """Policy rules (JSON) replacing the packaged rules."""
    ca_paths: CAPaths | None = None
    """Bring-your-own CA files; default: created in `<data_dir>/ca`."""
    leaf_ttl_seconds: int = 3600
    """Lifetime of a plugin certificate."""
    join_token_ttl_seconds: int = 900
    """Default lifetime of a join token."""
    heartbeat_interval_seconds: float = 5.0
    """How often plugins must heartbeat."""
    heartbeat_misses: int = 3
    """Missed heartbeats after which a plugin is unhealthy."""
    init_timeout_seconds: float = 15.0
    """How long one attempt to reach a new plugin's Init keeps trying; after a
    failed attempt the core retries Init with backoff, routing nothing to it."""
    audit_checkpoint_seconds: float = 10.0
    """How often a signed audit checkpoint is written."""
    audit_writers: str = "single"
    """`single`: this core is the only writer of its audit chain, so records
    after the final checkpoint of a clean stop are tampering and stop the next
    start. `shared`: several core replicas append to one chain (one PostgreSQL),
    each anchoring it in its own checkpoint file, so records after this core's
    final checkpoint may be another replica's: they are chain-checked at start
    and named as unanchored instead."""
    audit_durability: str = "group"
    """When an answer may leave relative to its audit record: `group` once the
    record is committed and handed to the OS, fsynced within
    `audit_sync_interval`; `fsync` once the fsync covering it is done."""
    audit_sync_interval: float = 0.010
    """Group mode's bound (seconds) from commit to fsync: a power loss loses at
    most the records of this window (a kill -9 of the core loses none)."""
    accept_audit_tampering: int | None = None
    """Start although the audit tail's start-up check names this first bad
    sequence (`--accept-audit-tampering SEQ`, for this run only): the
    acceptance is the first audit record and is raised as a SecurityAlert."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request or response message."""
    max_connections: int = 1000
    """Connections the core's server holds at once, over both ports
    (`grpc.max_allowed_incoming_connections`); one more is closed as it is
    accepted. Keep it below the process's open-file limit (`ulimit -n`)."""
    handshake_timeout_seconds: float = 10.0
    """A connection that has not completed its TLS and HTTP/2 handshake by
    then is closed (`grpc.server_handshake_timeout_ms`)."""
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    """Per-principal rate limit."""
    concurrency: ConcurrencyConfig = field(default_factory=ConcurrencyConfig)
    """Per-principal caps on open streams and unary calls in flight, over all its connections."""
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    """Operator lane deadlines, retries, circuit breaker and bulkhead."""
    egress: EgressConfig = field(default_factory=EgressConfig)
    """Egress proxy limits, allow ranges, credential injection, report-only plugins."""
    events: EventsConfig = field(default_factory=EventsConfig)
    """Event bus backend, delivery attempts, timeouts, dedupe window and backlog caps."""
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    """User sign-in: token lifetimes, sessions, lockout, password hashing cost."""
    secrets_key_file: pathlib.Path | None = None
    """Key-encryption keys for secret plugin config values (one base64 32-byte key
    per line, first one encrypts, mode 0600); default `<data_dir>/config/secrets.key`,
    created on first start."""
    secrets_key: str | None = field(default=None, repr=False)
    """`VIVIFIED_SECRETS_KEY` (comma-separated base64 keys); wins over the key file."""
    settings_refresh_seconds: float = 3.0
    """How often a running core re-reads the runtime overrides stored in the
    database, so a change stored through another replica applies here within
    this long (a change stored through this core applies at once)."""
    registry_sync_bound_seconds: float = 1.0
    storage_backend: str = "directory"
    """Where the object store keeps its (encrypted) objects: `directory`
    (`<data_dir>/objects`, one core) or `database` (the core's database, for
    several replicas on one PostgreSQL)."""
    storage_max_object_bytes: int = 64 * 1024 * 1024
    """The largest object a plugin may store."""
    storage_quota_bytes: int = 1024 * 1024 * 1024
    """The bytes of content each plugin may keep in the object store."""
    """The longest a replica acts on its registry view (plugin status, health,
    revoked certificates) without having read the changes other replicas
    committed: changes apply everywhere within it, and past it the replica
    refuses plugin and operator calls (REGISTRY_STALE) until it reads them."""
    setting_sources: tuple[tuple[str, str], ...] = ()
    """(key, source) of each setting not at its built-in default: `file:<path>`,
    `env:<VARIABLE>`, `flag`, or `database (set by <actor>: <reason>)` for a
    runtime override stored in the database that the core applies."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        if self.leaf_ttl_seconds < 10:
            raise ValueError("leaf_ttl_seconds must be at least 10")
        if self.leaf_ttl_seconds > MAX_LEAF_TTL_SECONDS:
            # Short-lived plugin certificates are what bounds a stolen key.
            raise ValueError(f"leaf_ttl_seconds may be at most {MAX_LEAF_TTL_SECONDS} (one day)")
        if self.max_connections < 1 or not 0 < self.handshake_timeout_seconds <= 300:
            raise ValueError("max_connections must be at least 1 and handshake_timeout_seconds in (0, 300]")
        if not 0.1 <= self.settings_refresh_seconds <= 300:
            raise ValueError("settings_refresh_seconds must be between 0.1 and 300")
        if self.audit_writers not in AUDIT_WRITERS:
            raise ValueError(f"audit_writers must be one of {', '.join(AUDIT_WRITERS)}, not {self.audit_writers!r}")
        if self.audit_durability not in DURABILITY_MODES:
            raise ValueError(
                f"audit_durability must be one of {', '.join(DURABILITY_MODES)}, not {self.audit_durability!r}"
            )
        if not MIN_SYNC_INTERVAL <= self.audit_sync_interval <= MAX_SYNC_INTERVAL:
            raise ValueError(f"audit_sync_interval must be between {MIN_SYNC_INTERVAL} and {MAX_SYNC_INTERVAL} seconds")
        if self.storage_backend not in ("directory", "database"):
            raise ValueError(f"storage_backend must be directory or database, not {self.storage_backend!r}")
        if self.storage_max_object_bytes < 1 or self.storage_quota_bytes < 1:
            raise ValueError("storage_max_object_bytes and storage_quota_bytes must be at least 1")
        if not 0.2 <= self.registry_sync_bound_seconds <= 60:
            raise ValueError("registry_sync_bound_seconds must be between 0.2 and 60")
        if not 0 < self.init_timeout_seconds <= 300:
            raise ValueError("init_timeout_seconds must be in (0, 300]")
        if self.heartbeat_interval_seconds <= 0 or self.heartbeat_misses < 1:
            raise ValueError("heartbeat interval must be positive and misses at least 1")
