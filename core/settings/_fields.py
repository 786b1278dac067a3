"""Where each setting lives in a CoreConfig, generated from the table's `field`
column: read the effective value, set values (with a token bucket's burst),
build the defaults of a component's config, and check a config's own fields
against the table's bounds and choices.

Nothing here imports CoreConfig at run time (its module reads the table for
its defaults); configs are frozen dataclasses changed with `replace`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from vivified.core.settings._table import BY_KEY, SETTINGS, Setting, burst_for, flag_origin

if TYPE_CHECKING:
    from vivified.core.config import CoreConfig

_C = TypeVar("_C")


def _get(config: object, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def field_value(config: CoreConfig, setting: Setting) -> object:
    """What the setting's CoreConfig field holds."""
    return _get(config, setting.field)


def assignments(setting: Setting, value: Any) -> dict[str, Any]:
    """The CoreConfig fields (dotted paths) one setting's value sets. A value
    outside the row's bounds is a ValueError here when it goes into a
    component's config, named with its flag and variable since the component's
    field has another name; CoreConfig checks its own fields (`check_fields`)."""
    if "." in setting.field:
        problem = setting.problem(value)
        if problem is not None:
            raise ValueError(f"{flag_origin(setting)} {problem}")
    fields = {setting.field: setting.build(value) if setting.build is not None else value}
    if setting.burst is not None:
        fields[setting.burst] = burst_for(float(value))
    return fields


def with_fields(config: _C, fields: Mapping[str, Any]) -> _C:
    """`config` with the dotted fields set; each nested config is replaced
    once, so its own checks see all its new values together."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in fields.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, inner in nested.items():
        top[head] = with_fields(getattr(config, head), inner)
    return dataclasses.replace(config, **top)  # type: ignore[type-var]


def component_defaults(component: str) -> dict[str, Any]:
    """The table's defaults for one component config (`events`, `gateway`, ...),
    as keyword arguments of that config's class."""
    prefix = f"{component}."
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field.startswith(prefix) and setting.default is not None:
            for path, value in assignments(setting, setting.default).items():
                values[path.removeprefix(prefix)] = value
    return values


def check_fields(config: object) -> None:
    """ValueError naming the first top-level CoreConfig field outside its row's
    bounds or choices (CoreConfig calls this from `__post_init__`)."""
    for setting in SETTINGS:
        if "." in setting.field or setting.build is not None:
            continue
        problem = setting.problem(getattr(config, setting.field))
        if problem is not None:
            raise ValueError(f"{setting.field} {problem}")


def getter(key: str) -> Callable[[CoreConfig], object]:
    setting = BY_KEY[key]
    return lambda config: field_value(config, setting)


def setter(key: str) -> Callable[[CoreConfig, Any], CoreConfig]:
    setting = BY_KEY[key]
    return lambda config, value: with_fields(config, assignments(setting, value))
