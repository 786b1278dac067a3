"""The plugin registry: durable plugin state, registration, administration and health.

PluginStore       plugin rows, certificates and revocations, cached in memory
RegistryService   Register/Heartbeat/Renew (`vivified.registry.v1`)
AdminService      approve, list, disable, revoke (`vivified.admin.v1`)
PluginConnector   the core's client channels to plugins (Init, health, Shutdown)
HealthMonitor     Init with retry, missed-heartbeat sweeps, lifecycle leases
RegistrySync      follows changes other replicas commit (`follow_registry`)
build_registry    all of the above for one core (`Registry`)
"""

from vivified.core.registry._admin_service import AdminService
from vivified.core.registry._connector import CoreIdentity, PluginConnector
from vivified.core.registry._lease import LifecycleLeases
from vivified.core.registry._monitor import HealthMonitor, liveness_audit
from vivified.core.registry._registry_service import RegistryService
from vivified.core.registry._replicas import follow_registry
from vivified.core.registry._store import (
    ACTIVE,
    APPROVED,
    DISABLED,
    HEALTHY,
    INIT_FAILED,
    REVOKED,
    UNHEALTHY,
    UNKNOWN,
    CertificateRecord,
    PluginRecord,
    PluginStore,
)
from vivified.core.registry._sync import RegistrySync
from vivified.core.registry._wiring import Registry, build_registry

__all__ = [
    "CertificateRecord",
    "ACTIVE",
    "APPROVED",
    "DISABLED",
    "HEALTHY",
    "INIT_FAILED",
    "REVOKED",
    "UNHEALTHY",
    "UNKNOWN",
    "AdminService",
    "CoreIdentity",
    "HealthMonitor",
    "LifecycleLeases",
    "PluginConnector",
    "PluginRecord",
    "PluginStore",
    "Registry",
    "RegistryService",
    "RegistrySync",
    "build_registry",
    "follow_registry",
    "liveness_audit",
]
