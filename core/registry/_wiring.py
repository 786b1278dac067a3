"""Assembles the registry's parts for the core: the plugin store, the peer
authenticator, the lifecycle (connections, health monitor, leases), the
replica follower and the two gRPC services."""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa

from vivified.core.audit import AuditLog
from vivified.core.ca import CertificateAuthority, PeerCertificateParser
from vivified.core.chain import Authenticator, StreamTracker
from vivified.core.clock import Clock
from vivified.core.registry._admin_service import AdminService
from vivified.core.registry._connector import CoreIdentity, PluginConnector
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._monitor import HealthMonitor, liveness_audit
from vivified.core.registry._registry_service import RegistryService
from vivified.core.registry._replicas import follow_registry
from vivified.core.registry._store import PluginStore
from vivified.core.registry._sync import RegistrySync
from vivified.core.traits import TraitCatalogue
from vivified.events.v1.canonical_pb2 import SecurityAlert


@dataclass(frozen=True)
class Registry:
    """The registry of one core. Nothing here has started: the core loads the
    store, then starts `monitor` and `sync` once it serves, and closes
    `connector` after the server stopped."""

    store: PluginStore
    streams: StreamTracker
    authenticator: Authenticator
    connector: PluginConnector
    monitor: HealthMonitor
    sync: RegistrySync
    service: RegistryService
    admin: AdminService


def build_registry(
    *,
    engine: sa.Engine,
    clock: Clock,
    ca: CertificateAuthority,
    core_identity: CoreIdentity,
    catalogue: TraitCatalogue,
    audit: AuditLog,
    trust_domain: str,
    sync_bound: float,
    heartbeat_interval: Callable[[], float],
    heartbeat_misses: int,
    init_timeout: float,
    leaf_ttl: Callable[[], dt.timedelta],
    join_token_ttl_seconds: int,
    core_endpoint: Callable[[], str],
    plugin_socket_dir: pathlib.Path | None,
    on_heartbeat: Callable[[str], None],
    on_alert: Callable[[SecurityAlert], Awaitable[None]],
) -> Registry:
    """`heartbeat_interval` and `leaf_ttl` are read when used (runtime
    settings); `core_endpoint` is the bound mTLS address once the core serves."""
    store = PluginStore(engine, clock, sync_bound=sync_bound)
    streams = StreamTracker()
    authenticator = Authenticator(PeerCertificateParser(trust_domain), store.is_revoked_serial)
    connector = PluginConnector(core_identity, clock)
    monitor = HealthMonitor(
        store,
        connector,
        clock,
        interval=heartbeat_interval,
        misses=heartbeat_misses,
        init_timeout=init_timeout,
        # This process's lifecycle leases: a new replica id per start, so a
        # restarted replica does not resume leases it may no longer deserve.
        leases=LifecycleLeases(
            engine, clock, f"replica-{uuid.uuid4().hex}", ttl=lambda: heartbeat_interval() * heartbeat_misses
        ),
        on_change=liveness_audit(audit),
        on_heartbeat=on_heartbeat,
    )

    async def revoked(plugin_id: str) -> None:
        record = store.get(plugin_id)
        if record is not None:
            await connector.shutdown(record, "revoked")
        await connector.forget(plugin_id)

    return Registry(
        store=store,
        streams=streams,
        authenticator=authenticator,
        connector=connector,
        monitor=monitor,
        sync=follow_registry(store, engine, streams),
        service=RegistryService(
            store=store,
            ca=ca,
            catalogue=catalogue,
            authenticator=authenticator,
            monitor=monitor,
            streams=streams,
            heartbeat_interval=heartbeat_interval,
            leaf_ttl=leaf_ttl,
            on_revoked=revoked,
            on_resumed=connector.forget,
            core_endpoint=core_endpoint,
            socket_dir=plugin_socket_dir,
        ),
        admin=AdminService(
            store=store,
            catalogue=catalogue,
            streams=streams,
            clock=clock,
            token_ttl_seconds=join_token_ttl_seconds,
            on_revoked=revoked,
            on_alert=on_alert,
        ),
    )
