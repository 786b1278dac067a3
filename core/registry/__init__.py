"""The plugin registry: durable plugin state, registration, administration and health."""

from vivified.core.registry._store import (
    ACTIVE,
    APPROVED,
    DISABLED,
    HEALTHY,
    INIT_FAILED,
    REVOKED,
    UNHEALTHY,
    UNKNOWN,
    PluginRecord,
    PluginStore,
)

__all__ = [
    "ACTIVE",
    "APPROVED",
    "DISABLED",
    "HEALTHY",
    "INIT_FAILED",
    "REVOKED",
    "UNHEALTHY",
    "UNKNOWN",
    "PluginRecord",
    "PluginStore",
]
