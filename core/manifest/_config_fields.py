"""A manifest's `config` schema, and the check of one value against a field.

The same `check_value` runs on a manifest's `default_value` (at approval) and
on every value an administrator sets (ConfigService), so a value the plugin
reads always parses as the type it declared. Messages never repeat a value:
it may be a secret.
"""

from __future__ import annotations

import re

from vivified.core.manifest._problem import manifest_invalid, show
from vivified.manifest.v1.manifest_pb2 import (
    ConfigField,
    ConfigFieldType,
    PluginManifest,
)

MAX_CONFIG_FIELDS = 64
MAX_VALUE_LENGTH = 4096
MAX_FIELD_DESCRIPTION = 512
STRING = ConfigFieldType.CONFIG_FIELD_TYPE_STRING
INT = ConfigFieldType.CONFIG_FIELD_TYPE_INT
BOOL = ConfigFieldType.CONFIG_FIELD_TYPE_BOOL
SECRET = ConfigFieldType.CONFIG_FIELD_TYPE_SECRET
_TYPE_NAMES: dict[int, str] = {STRING: "string", INT: "int", BOOL: "bool", SECRET: "secret"}
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def type_name(kind: int) -> str:
    return _TYPE_NAMES.get(kind, "unspecified")


def value_problem(field: ConfigField, value: str) -> str | None:
    """Why `value` is not a valid value of `field`, or None when it is."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"longer than {MAX_VALUE_LENGTH} characters"
    if field.type == INT:
        if not _INT.fullmatch(value) or not _INT64_MIN <= int(value) <= _INT64_MAX:
            return "must be a 64-bit decimal integer such as 25 or -3"
    elif field.type == BOOL:
        if value not in ("true", "false"):
            return "must be true or false"
    elif field.type == STRING:
        if not all(ch.isprintable() or ch in "\n\t" for ch in value):
            return "contains control or bidi characters"
    elif field.type == SECRET:
        if "\x00" in value:
            return "contains a NUL character"
    else:
        return "has no type"
    return None


def check_config_schema(manifest: PluginManifest) -> None:
    """Raise MANIFEST_INVALID for the first problem in `manifest.config`."""
    fields = list(manifest.config)
    if len(fields) > MAX_CONFIG_FIELDS:
        raise manifest_invalid(f"config: at most {MAX_CONFIG_FIELDS} fields")
    seen: set[str] = set()
    for index, field in enumerate(fields):
        where = f"config[{index}]"
        if not _KEY.fullmatch(field.name):
            raise manifest_invalid(
                f"{where}.name: {show(field.name)} must be 1-64 characters of a-z, 0-9 and '_', starting with a letter"
            )
        if field.name in seen:
            raise manifest_invalid(f"{where}.name: {field.name!r} is listed twice")
        seen.add(field.name)
        if field.type not in _TYPE_NAMES:
            raise manifest_invalid(f"{where}.type: must be one of {', '.join(ConfigFieldType.keys()[1:])}")
        if len(field.description) > MAX_FIELD_DESCRIPTION or not field.description.isprintable():
            raise manifest_invalid(f"{where}.description: at most {MAX_FIELD_DESCRIPTION} printable characters")
        if field.default_value:
            if field.type == SECRET:
                raise manifest_invalid(f"{where}.default_value: a secret has no default (it would sit in the manifest)")
            if field.required:
                raise manifest_invalid(f"{where}: a required field has no default_value")
            problem = value_problem(field, field.default_value)
            if problem is not None:
                raise manifest_invalid(f"{where}.default_value: {problem} ({type_name(field.type)})")
