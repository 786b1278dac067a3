"""Read a manifest file (YAML or JSON) into a PluginManifest, refusing anything odd.

Order matters for cost: the size cap comes before decoding, the nesting cap
before (JSON) or while (YAML) parsing, so hostile input is refused cheaply
and never reaches a recursive parser in a form that could blow its stack.
Semantic rules (id format, traits, domains) are `validate_manifest`'s job.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml
from google.protobuf import json_format

from vivified.core.manifest._problem import manifest_invalid, show
from vivified.core.manifest._shape import check_message
from vivified.core.manifest._yaml import MAX_DEPTH, MAX_NODES, load_yaml
from vivified.manifest.v1.manifest_pb2 import PluginManifest

MAX_MANIFEST_BYTES = 64 * 1024
# Present in every manifest file; security and compliance may be omitted
# by a plugin that reaches no outside host and handles no classified data.
REQUIRED_KEYS = ("id", "name", "version", "contracts", "traits")

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """Deepest bracket nesting outside string literals, computed without recursion."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def _count_values(value: Any) -> int:
    """Number of values in parsed JSON, iteratively (depth is already capped)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)  # keys count as values, as in YAML
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {show(key)}")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str, source: str) -> Any:
    if _json_depth(text) > MAX_DEPTH:
        raise manifest_invalid(f"{source}: nesting deeper than {MAX_DEPTH} levels")
    try:
        parsed = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise manifest_invalid(f"{source}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise manifest_invalid(f"{source}: nesting too deep") from None
    except ValueError as exc:  # duplicate key, NaN/Infinity, over-long integer
        raise manifest_invalid(f"{source}: not valid JSON: {exc}") from None
    # Same cap as YAML, so a document's fate does not depend on its syntax.
    if _count_values(parsed) > MAX_NODES:
        raise manifest_invalid(f"{source}: more than {MAX_NODES} values")
    return parsed


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise manifest_invalid(f"{source}: not valid YAML: {what}{at}") from None
    except yaml.YAMLError as exc:
        raise manifest_invalid(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise manifest_invalid(f"{source}: nesting too deep") from None
    except (ValueError, OverflowError) as exc:  # scalar conversion, e.g. an over-long integer
        raise manifest_invalid(f"{source}: not valid YAML: {exc}") from None


def load_manifest_bytes(data: bytes, *, source: str = "<manifest>") -> PluginManifest:
    """Parse a YAML or JSON manifest into a PluginManifest.

    Raises InvalidArgument(reason="MANIFEST_INVALID") naming the problem:
    oversize, bad encoding, syntax, duplicate keys, nesting, a missing
    required key, an unknown key or a value of the wrong type.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise manifest_invalid(f"{source}: manifest must be bytes")
    if len(data) > MAX_MANIFEST_BYTES:
        raise manifest_invalid(f"{source}: manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise manifest_invalid(f"{source}: not UTF-8 (byte offset {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if text.lstrip(" \t\r\n").startswith("{"):
        parsed = _parse_json(text, source)
    else:
        parsed = _parse_yaml(text, source)
    if not isinstance(parsed, dict):
        raise manifest_invalid(f"{source}: the manifest must be a mapping of keys to values")
    missing = [key for key in REQUIRED_KEYS if key not in parsed]
    if missing:
        raise manifest_invalid(f"{source}: missing required key(s): {', '.join(missing)}")
    check_message(parsed, PluginManifest.DESCRIPTOR, "", source)
    try:
        return json_format.ParseDict(parsed, PluginManifest(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise manifest_invalid(f"{source}: {exc}") from None


def load_manifest_file(path: str | os.PathLike[str]) -> PluginManifest:
    """Read and parse a manifest file; never reads more than the size limit plus one byte."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise manifest_invalid(f"{source}: cannot read manifest: {exc.strerror}") from None
    return load_manifest_bytes(data, source=source)
