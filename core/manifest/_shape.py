"""Check parsed manifest data against the PluginManifest message, strictly.

`json_format.ParseDict` alone is lenient where a manifest must not be: it
takes `"12"` and `12.0` for an int32, enum numbers for names, camelCase
aliases beside snake_case names (so one field could be spelt twice), and
null for "unset". This walk accepts only the proto field names and exactly
one JSON type per field kind, and names the path of the first problem.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from vivified.core.manifest._problem import manifest_invalid, show

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def describe(value: object) -> str:
    """Name the JSON type of a parsed value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_message(data: object, descriptor: Descriptor, path: str, source: str) -> None:
    """Raise MANIFEST_INVALID unless `data` is a mapping shaped like `descriptor`."""
    where = path or "manifest"
    if not isinstance(data, dict):
        raise manifest_invalid(f"{source}: {where}: expected a mapping, got {describe(data)}")
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            allowed = ", ".join(sorted(descriptor.fields_by_name))
            raise manifest_invalid(f"{source}: {where}: unknown key {show(key)}; allowed keys are {allowed}")
        _check_field(value, field, _join(path, key), source)


def _check_field(value: object, field: FieldDescriptor, path: str, source: str) -> None:
    if field.is_repeated:
        if not isinstance(value, list):
            raise manifest_invalid(f"{source}: {path}: expected a list, got {describe(value)}")
        for index, item in enumerate(value):
            _check_single(item, field, f"{path}[{index}]", source)
    else:
        _check_single(value, field, path, source)


def _check_single(value: object, field: FieldDescriptor, path: str, source: str) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        check_message(value, field.message_type, path, source)
    elif kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise manifest_invalid(f"{source}: {path}: expected a string, got {describe(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise manifest_invalid(f"{source}: {path}: contains an unpaired surrogate") from None
    elif kind == FieldDescriptor.TYPE_INT32:
        if isinstance(value, bool) or not isinstance(value, int):
            raise manifest_invalid(f"{source}: {path}: expected an integer, got {describe(value)}")
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise manifest_invalid(f"{source}: {path}: integer out of range")
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise manifest_invalid(f"{source}: {path}: expected true or false, got {describe(value)}")
    elif kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        names = field.enum_type.values_by_name
        if not isinstance(value, str) or value not in names:
            raise manifest_invalid(f"{source}: {path}: expected one of {', '.join(names)}, got {show(value)}")
    else:
        # A field kind this walk does not know: refuse rather than guess, so a
        # new proto field cannot slip past with ParseDict's lenient rules.
        raise manifest_invalid(f"{source}: {path}: field type {kind} is not supported")
