"""Per-plugin configuration: values administrators set for the keys a plugin's
approved manifest declares, with history, audit and watch; secret values
sealed with AES-256-GCM.

    SecretsKeyring     key-encryption keys (file or VIVIFIED_SECRETS_KEY), rotation by key id
    PluginConfigStore  values and history in the database; per-plugin watchers
    ConfigFollower     wakes this core's watchers on changes made through other cores
    ConfigService      the gRPC service (`vivified.config.v1.ConfigService`)

Errors: InvalidArgument CONFIG_INVALID / INVALID_REQUEST, NotFound
PLUGIN_NOT_FOUND, FailedPrecondition SECRETS_KEY_INSECURE (start-up) and
SECRET_UNREADABLE (domain `vivified.config`).
"""

from vivified.core.plugin_config._follow import ConfigFollower
from vivified.core.plugin_config._keyring import (
    SecretsKeyInsecure,
    SecretsKeyring,
    key_id,
)
from vivified.core.plugin_config._service import ConfigService
from vivified.core.plugin_config._store import (
    MASK,
    Change,
    PluginConfigStore,
    StoredValue,
)
from vivified.core.plugin_config._wiring import PluginConfig, build_config

__all__ = [
    "MASK",
    "Change",
    "ConfigFollower",
    "ConfigService",
    "PluginConfig",
    "PluginConfigStore",
    "SecretsKeyInsecure",
    "SecretsKeyring",
    "StoredValue",
    "build_config",
    "key_id",
]
