"""The areas of one core, each built by its package's `build_*` from what
the areas share (`Areas`): the core's config, clock, database, live
settings, metrics, tracing and trait catalogue. `Core._compose`
(`vivified.core.app`) calls these in order and starts what they return in
its one start/stop list; nothing here starts anything.

Runtime settings reach the components as zero-argument getters on the live
settings (`lambda: self.live.current.gateway`), read when the component
acts, so a change applies without a restart; start-time settings are read
from `config` once, here."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from google.protobuf.message import Message
from grpc_health.v1 import health

from vivified.core.audit import Audit, AuditFeed, AuditQueryService, Durability, build_audit
from vivified.core.ca import CertificateAuthority, CoreTLS
from vivified.core.carotation import CARotationDriver, CertificateExpiry, CoreRekeyer, LeafExpiry
from vivified.core.chain import (
    AuditRecorder,
    ChainDeps,
    ChainInterceptor,
    ConcurrencyLimits,
    Principal,
    TokenBuckets,
    build_chain,
)
from vivified.core.chain import annotate as chain_annotate
from vivified.core.clock import Clock
from vivified.core.config import CoreConfig
from vivified.core.egress import EgressService, build_egress
from vivified.core.events import EventBus, build_events
from vivified.core.gateway import Gateway, PolicySet, build_gateway
from vivified.core.identity import Activation, Identity, build_identity
from vivified.core.kinds import PluginStatus
from vivified.core.metrics import Metrics
from vivified.core.plugin_config import PluginConfig, build_config
from vivified.core.registry import CoreIdentity, Registry, build_registry
from vivified.core.server import CoreServer, build_server
from vivified.core.services import METHODS, SERVED, Services
from vivified.core.settings import CoreSettingsAdmin, LiveSettings, OverrideStore
from vivified.core.storage import ObjectStoreService, build_object_store
from vivified.core.telemetry import Tracing
from vivified.core.traits import AccessCatalogueService, TraitCatalogue
from vivified.events.v1.canonical_pb2 import SecurityAlert

PublishAlert = Callable[[SecurityAlert], Awaitable[None]]


@dataclass(frozen=True)
class Areas:
    """What every area of one core is built from; one method an area."""

    config: CoreConfig
    """The config after the runtime overrides applied at start."""
    clock: Clock
    engine: sa.Engine
    live: LiveSettings
    metrics: Metrics
    tracing: Tracing
    catalogue: TraitCatalogue

    @classmethod
    def open(
        cls, config: CoreConfig, clock: Clock, engine: sa.Engine, live: LiveSettings, metrics: Metrics, tracing: Tracing
    ) -> Areas:
        """The areas' footing: creates the audit directory (mode 0700) and loads the packaged trait catalogue."""
        (config.data_dir / "audit").mkdir(mode=0o700, exist_ok=True)
        return cls(config, clock, engine, live, metrics, tracing, TraitCatalogue.load_default())

    @property
    def audit_dir(self) -> pathlib.Path:
        return self.config.data_dir / "audit"

    def audit(self, *, on_failure: Callable[[BaseException], None]) -> Audit:
        config = self.config
        return build_audit(
            engine=self.engine,
            clock=self.clock,
            audit_dir=self.audit_dir,
            checkpoint_every=config.audit_checkpoint_seconds,
            shared_chain=config.audit_writers == "shared",
            durability=Durability(config.audit_durability, config.audit_sync_interval),
            on_commit=self.metrics.on_audit_commit,
            on_failure=on_failure,
            # Refuses (AuditTailTampered) to extend a tail that fails its check,
            # unless the operator accepted that very first bad seq for this run.
            accept_tampering=config.accept_audit_tampering,
        )

    def registry(
        self,
        *,
        ca: CertificateAuthority,
        core_identity: CoreIdentity,
        audit: Audit,
        on_alert: PublishAlert,
        core_endpoint: Callable[[], str],
    ) -> Registry:
        config, live = self.config, self.live
        return build_registry(
            engine=self.engine,
            clock=self.clock,
            ca=ca,
            catalogue=self.catalogue,
            audit=audit.log,
            core_identity=core_identity,
            trust_domain=config.trust_domain,
            sync_bound=config.registry_sync_bound_seconds,
            heartbeat_interval=lambda: live.current.heartbeat_interval_seconds,
            heartbeat_misses=config.heartbeat_misses,
            init_timeout=config.init_timeout_seconds,
            leaf_ttl=lambda: dt.timedelta(seconds=live.current.leaf_ttl_seconds),
            join_token_ttl_seconds=config.join_token_ttl_seconds,
            on_alert=on_alert,
            core_endpoint=core_endpoint,
            plugin_socket_dir=config.plugin_socket_dir,
            on_heartbeat=self.metrics.on_heartbeat,
        )

    def identity(
        self,
        *,
        policy: PolicySet,
        announce_break_glass: Callable[[Activation], Awaitable[None]],
        publish: Callable[[Message], Awaitable[None]],
    ) -> Identity:
        """Users sign in on the bootstrap port; the chain turns their bearer
        tokens into `user` principals. A weak token key stops start-up."""
        return build_identity(
            engine=self.engine,
            clock=self.clock,
            data_dir=self.config.data_dir,
            config=self.config.identity,
            traits=self.catalogue,
            announce_break_glass=announce_break_glass,
            publish=publish,
            policy_index=policy.index,
            served_services=tuple(served.name for served in SERVED),
        )

    def plugin_config(self, *, registry: Registry, override_store: OverrideStore) -> PluginConfig:
        """A missing, weak or exposed secrets key stops start-up (SECRETS_KEY_INSECURE)."""
        config = self.config
        return build_config(
            engine=self.engine,
            clock=self.clock,
            secrets_key=config.secrets_key,
            secrets_key_file=config.secrets_key_file,
            data_dir=config.data_dir,
            lookup=registry.store.get,
            core_settings=CoreSettingsAdmin(override_store, self.live),
            follow_interval=config.registry_sync_bound_seconds / 4,
        )

    def chain(
        self,
        *,
        registry: Registry,
        credentials: Callable[[Mapping[str, str]], Awaitable[Principal]],
        policy: PolicySet,
        recorder: AuditRecorder,
    ) -> ChainInterceptor:
        """The interceptor chain every call passes (authn, status gate, rate
        limit, policy, audit), its limits read from the live settings."""
        live = self.live
        limits = ConcurrencyLimits(lambda: live.current.concurrency)
        self.metrics.watch_concurrency(limits.totals)
        return build_chain(
            ChainDeps(
                audit=recorder,
                authenticator=registry.authenticator,
                policy_index=policy.index,
                methods=METHODS,
                plugin_lookup=registry.store.get,
                streams=registry.streams,
                buckets=TokenBuckets(lambda: live.current.rate_limit, self.clock),
                concurrency=limits,
                tracer=self.tracing.tracer("vivified.core"),
                on_decision=self.metrics.on_decision,
                on_done=self.metrics.on_call_done,
                credentials=credentials,
                registry_stale=registry.store.stale,
            )
        )

    def gateway(self, *, policy: PolicySet, registry: Registry, identity: Identity) -> Gateway:
        live = self.live
        return build_gateway(
            policy=policy,
            config=lambda: live.current.gateway,
            lookup=registry.store.get,
            connector=registry.connector,
            clock=self.clock,
            delegations=identity.delegations,
            on_breaker=self.metrics.on_breaker,
            tracer=self.tracing.tracer("vivified.core.gateway"),
        )

    def egress(self, *, registry: Registry, plugin_config: PluginConfig) -> EgressService:
        config = self.config
        return build_egress(
            config=config.egress,
            plugin_lookup=registry.store.get,
            identify=registry.authenticator.principal,
            annotate=lambda _context, fields: chain_annotate(**fields),
            clock=self.clock,
            own_addresses=[config.listen_address, config.bootstrap_address, config.metrics_address],
            environ=os.environ,
            max_message_bytes=config.max_message_bytes,
            plugin_secret=plugin_config.store.secret,
            tracer=self.tracing.span_tracer("vivified.core.egress"),
            on_fetch=self.metrics.on_egress_fetch,
        )

    def object_store(
        self, *, registry: Registry, plugin_config: PluginConfig, identity: Identity
    ) -> ObjectStoreService:
        store = registry.store
        object_store = build_object_store(
            config=self.config,
            engine=self.engine,
            keyring=plugin_config.keyring,
            clock=self.clock,
            lookup=store.get,
            identify=registry.authenticator.principal,
            delegations=identity.delegations,
        )
        self.metrics.watch_storage(lambda: [r.plugin_id for r in store.all()], object_store.footprint)
        return object_store

    def events(self, *, registry: Registry, audit: Audit, recorder: AuditRecorder) -> EventBus:
        live = self.live
        return build_events(
            config=lambda: live.current.events,
            data_dir=self.config.data_dir,
            clock=self.clock,
            lookup=registry.store.get,
            identify=registry.authenticator.principal,
            audit=audit.log,
            record_open=recorder.record_stream_open,
            metrics=self.metrics,
            tracer=self.tracing.span_tracer("vivified.core.events"),
        )

    def server(
        self,
        *,
        chain: ChainInterceptor,
        services: Services,
        gateway: Gateway,
        tls: CoreTLS,
        grace: Callable[[], float],
    ) -> CoreServer:
        return build_server(
            config=self.config,
            chain=chain,
            bindings=services.bindings(),
            contract_proxy=gateway.contract_proxy,
            tls=tls,
            grace=grace,
        )

    def services(
        self,
        *,
        registry: Registry,
        gateway: Gateway,
        egress: EgressService,
        object_store: ObjectStoreService,
        events: EventBus,
        identity: Identity,
        plugin_config: PluginConfig,
        recorder: AuditRecorder,
    ) -> Services:
        """The servicers `vivified.core.services` binds."""
        engine, config = self.engine, self.config
        return Services(
            registry=registry.service,
            plugin_admin=registry.admin,
            health=health.aio.HealthServicer(),
            gateway=gateway.service,
            egress=egress,
            storage=object_store,
            events=events,
            identity=identity,
            config=plugin_config.service,
            audit_query=AuditQueryService(
                engine,
                self.audit_dir,
                AuditFeed(engine, lambda: config.audit_watch_buffer),
                recorder.record_stream_open,
            ),
            access=AccessCatalogueService(self.catalogue, identity.roles),
        )

    def ca_rotation(
        self,
        *,
        ca: CertificateAuthority,
        tls: CoreTLS,
        registry: Registry,
        core_identity: CoreIdentity,
        audit: Audit,
        reissue_operator: Callable[[bool], Awaitable[None]],
        publish_alert: PublishAlert,
    ) -> CARotationDriver:
        """`vivified ca rotate`: steps performed when due, audited; expiry gauges and alerts.
        `reissue_operator(switched)` writes the operator identity again after a trust change."""
        live, store = self.live, registry.store
        return CARotationDriver(
            ca,
            leaf_ttl=lambda: dt.timedelta(seconds=live.current.leaf_ttl_seconds),
            on_trust_change=CoreRekeyer(ca, tls, registry.connector, core_identity, reissue_operator),
            audit=audit.log.append,
            publish_alert=publish_alert,
            expiry=CertificateExpiry(self.metrics.registry),
            certificates=lambda: store.certificates("plugin/"),
            leaf_expiry=LeafExpiry(self.metrics.registry),
            active_plugins=lambda: {r.plugin_id for r in store.all() if r.status == PluginStatus.ACTIVE},
        )
