"""The core's settings: one table of every setting (type, variable, flag,
whether administrators may override it at runtime), the parsing every layer
shares, and the top layer of the hierarchy — runtime overrides stored in the
database, applied by a running core without a restart.

    SETTINGS / resolve      every setting declared once (key, type, default, bounds, help,
                            flag, variable, runtime, CoreConfig field); defaults < config
                            file < environment and flags (the CLI reads them)
    SettingFields           CoreConfig's fields of the rows, generated (`_generate`)
    field_value / with_fields   where each row's value lives in a CoreConfig (generated)
    OverrideStore           overrides and their history in the database
    apply_overrides         the database layer on top of a built CoreConfig
    LiveSettings            the effective config a running core applies, re-read after
                            each change on this core and polled for other replicas' changes
    CoreSettingsAdmin       Set/Clear/ListCoreSettings and history behind ConfigService

Errors: SettingsError (a value the core cannot accept); over gRPC
InvalidArgument SETTING_NOT_OVERRIDABLE / CONFIG_INVALID / INVALID_REQUEST
(domain `vivified.config`).
"""

from vivified.core.data_dir import DEFAULT_DATA_DIR
from vivified.core.settings._admin import CoreSettingsAdmin
from vivified.core.settings._apply import (
    FIELDS,
    Applied,
    NotOverridable,
    apply_overrides,
    database_source,
    effective,
    overridable,
    parse_override,
)
from vivified.core.settings._config_fields import SettingFields
from vivified.core.settings._fields import assignments, check_fields, component_defaults, field_value, with_fields
from vivified.core.settings._live import LiveSettings
from vivified.core.settings._store import (
    Override,
    OverrideChange,
    OverrideStore,
    read_overrides,
)
from vivified.core.settings._table import (
    AUDIT_WRITERS,
    BY_KEY,
    MAX_LEAF_TTL_SECONDS,
    PROFILES,
    RUNTIME_KEYS,
    SETTINGS,
    CAPaths,
    Resolved,
    Setting,
    SettingsError,
    burst_for,
    convert,
    default,
    flag_origin,
    resolve,
)

__all__ = [
    "CAPaths",
    "AUDIT_WRITERS",
    "BY_KEY",
    "DEFAULT_DATA_DIR",
    "MAX_LEAF_TTL_SECONDS",
    "FIELDS",
    "PROFILES",
    "RUNTIME_KEYS",
    "SETTINGS",
    "Applied",
    "CoreSettingsAdmin",
    "LiveSettings",
    "NotOverridable",
    "Override",
    "OverrideChange",
    "OverrideStore",
    "Resolved",
    "Setting",
    "SettingFields",
    "SettingsError",
    "apply_overrides",
    "assignments",
    "burst_for",
    "check_fields",
    "component_defaults",
    "convert",
    "database_source",
    "default",
    "effective",
    "field_value",
    "flag_origin",
    "overridable",
    "parse_override",
    "read_overrides",
    "resolve",
    "with_fields",
]
