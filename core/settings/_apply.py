"""Runtime overrides applied to a built CoreConfig: where each overridable
setting lives in it, how an override's text becomes a typed value, and the
source text that names the administrator who set it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vivified.core.settings._fields import getter, setter
from vivified.core.settings._store import Override
from vivified.core.settings._table import (
    BY_KEY,
    RUNTIME_KEYS,
    Setting,
    SettingsError,
    convert,
)

if TYPE_CHECKING:
    # CoreConfig's module reads the settings table for its defaults.
    from vivified.core.config import CoreConfig


_Get = Callable[["CoreConfig"], object]
_Set = Callable[["CoreConfig", Any], "CoreConfig"]

# Where each overridable setting lives in CoreConfig, generated from the table's `field` column.
FIELDS: dict[str, tuple[_Get, _Set]] = {key: (getter(key), setter(key)) for key in RUNTIME_KEYS}


class NotOverridable(SettingsError):
    """The key is unknown or names a bootstrap or security setting."""


def effective(config: CoreConfig, key: str) -> object:
    return FIELDS[key][0](config)


def database_source(override: Override) -> str:
    return f"database (set by {override.updated_by}: {override.reason})"


def overridable(key: str) -> Setting:
    """The setting `key` names; NotOverridable unless it may be overridden at runtime."""
    setting = BY_KEY.get(key)
    if setting is None or not setting.runtime:
        what = "is not a core setting" if setting is None else "is a bootstrap or security setting"
        raise NotOverridable(
            f"{key[:64]!r} {what} and cannot be overridden at runtime (set bootstrap settings in the config file, "
            f"environment or flags); overridable keys: {', '.join(RUNTIME_KEYS)}"
        )
    return setting


def parse_override(config: CoreConfig, key: str, text: str) -> tuple[CoreConfig, str]:
    """`config` with `key` set to `text`, typed and checked exactly as the file and
    environment layers check it, and the value's canonical text."""
    value = convert(overridable(key), text.strip(), "override")
    try:
        return FIELDS[key][1](config, value), str(value)
    except ValueError as exc:
        raise SettingsError(f"override: {key}: {exc}") from None


@dataclass(frozen=True)
class Applied:
    """The config after overrides, the overrides that took effect and those refused."""

    config: CoreConfig
    overrides: dict[str, Override]
    refused: dict[str, str]


def apply_overrides(config: CoreConfig, overrides: Mapping[str, Override]) -> Applied:
    """Apply each stored override in table order. One that no longer parses
    (a later release narrowed the key or its range) is refused and reported,
    never half-applied; the lower layers' value stays."""
    applied: dict[str, Override] = {}
    refused: dict[str, str] = {}
    for key in [k for k in FIELDS if k in overrides] + sorted(k for k in overrides if k not in FIELDS):
        try:
            config, _ = parse_override(config, key, overrides[key].value)
        except SettingsError as exc:
            refused[key] = str(exc)
            continue
        applied[key] = overrides[key]
    sources = {k: v for k, v in config.setting_sources if k not in applied}
    sources.update((k, database_source(o)) for k, o in applied.items())
    return Applied(replace(config, setting_sources=tuple(sources.items())), applied, refused)
