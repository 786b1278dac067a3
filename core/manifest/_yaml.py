"""A YAML loader that accepts only plain data.

Why stricter than `yaml.safe_load`: a manifest is approved by its digest, so
two readers must never see different content in the same bytes (ASVS 1.5.3).
Duplicate keys (last one silently wins in PyYAML), anchors and aliases
(billion-laughs expansion), explicit tags, YAML 1.1 implicit types
(`no` -> False, `2001-01-01` -> date, `<<` merge keys) and non-string keys
are all refused. Scalars resolve by the YAML 1.2 core schema. Nesting is
capped while composing, so a deeply nested document fails cleanly instead
of exhausting the recursive composer.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.error import Mark, MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode

_Y = "tag:yaml.org,2002:"
_CORE_TAGS = frozenset(_Y + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))


def _refuse(problem: str, mark: Mark | None) -> MarkedYAMLError:
    return MarkedYAMLError(problem=problem, problem_mark=mark)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader restricted to the YAML 1.2 core schema with the checks above."""

    yaml_implicit_resolvers: dict[Any, Any] = {}
    yaml_constructors: dict[Any, Any] = dict(yaml.SafeLoader.yaml_constructors)
    max_depth = 16

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _refuse("anchors and aliases are not allowed", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _CORE_TAGS:
            raise _refuse(f"tag {tag!r} is not allowed", event.start_mark)
        nests = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nests:
            self._depth += 1
            if self._depth > self.max_depth:
                raise _refuse(f"nesting deeper than {self.max_depth} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            if nests:
                self._depth -= 1

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _Y + "str"):
                raise _refuse("mapping keys must be strings", key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            if key in mapping:
                raise _refuse(f"duplicate key {key!r}", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _construct_int(loader: StrictLoader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: StrictLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)


_RESOLVERS = (
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
)
for _name, _pattern, _first in _RESOLVERS:
    StrictLoader.add_implicit_resolver(_Y + _name, re.compile(rf"^(?:{_pattern})\Z"), _first)
StrictLoader.add_constructor(_Y + "int", _construct_int)
StrictLoader.add_constructor(_Y + "float", _construct_float)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; raise yaml.YAMLError on anything refused."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
