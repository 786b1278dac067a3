"""A YAML loader that accepts only plain data.

Why stricter than `yaml.safe_load`: a manifest is approved by its digest, so
two readers must never see different content in the same bytes (ASVS 1.5.3).
Duplicate keys (last one silently wins in PyYAML), anchors and aliases
(billion-laughs expansion), explicit tags, YAML 1.1 implicit types
(`no` -> False, `2001-01-01` -> date, `<<` merge keys) and non-string keys
are all refused. Scalars resolve by the YAML 1.2 core schema. Nesting and
the number of values are capped while composing, so a deeply nested or
bloated document fails cleanly and cheaply instead of exhausting the
recursive composer.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

try:  # libyaml, when PyYAML was built with it
    from yaml._yaml import CParser

    HAVE_LIBYAML = True
except ImportError:  # pragma: no cover - depends on the PyYAML build
    HAVE_LIBYAML = False

MAX_DEPTH = 16
# A real manifest has a few hundred nodes; the cap bounds the Python-side
# composing work a 64 KiB document of tiny items could otherwise cost.
MAX_NODES = 4096

_Y = "tag:yaml.org,2002:"
_CORE_TAGS = frozenset(_Y + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))


def _refuse(problem: str, mark: Mark | None) -> MarkedYAMLError:
    return MarkedYAMLError(problem=problem, problem_mark=mark)


class _StrictComposition(Composer, SafeConstructor, Resolver):
    """Composition and construction with the checks above; events come from a parser."""

    # Own table, filled below with the core schema only (the stubs type it
    # as an instance attribute, hence no ClassVar).
    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012
    yaml_constructors: ClassVar[dict[str | None, Any]] = dict(SafeConstructor.yaml_constructors)
    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES
    _depth = 0
    _nodes = 0

    def peek_event(self) -> Any:
        raise NotImplementedError  # provided by the parser class mixed in after this one

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _refuse("anchors and aliases are not allowed", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _CORE_TAGS:
            raise _refuse(f"tag {tag!r} is not allowed", event.start_mark)
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise _refuse(f"more than {self.max_nodes} values", event.start_mark)
        nests = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nests:
            self._depth += 1
            if self._depth > self.max_depth:
                raise _refuse(f"nesting deeper than {self.max_depth} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
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


class StrictLoader(_StrictComposition, Reader, Scanner, Parser):
    """Pure-Python loader: reader, scanner and parser from PyYAML."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    def peek_event(self) -> Any:
        return Parser.peek_event(self)  # type: ignore[no-untyped-call]  # unannotated in the stubs


def _construct_int(loader: SafeConstructor, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text, 0)
    if text.startswith("0x"):
        return int(text, 0)
    return int(text, 10)


def _construct_float(loader: SafeConstructor, node: ScalarNode) -> float:
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
        (
            r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
        ),
        list("-+.0123456789"),
    ),
)
for _name, _pattern, _first in _RESOLVERS:
    _StrictComposition.add_implicit_resolver(_Y + _name, re.compile(rf"^(?:{_pattern})\Z"), _first)
_StrictComposition.yaml_constructors[_Y + "int"] = _construct_int
_StrictComposition.yaml_constructors[_Y + "float"] = _construct_float


if HAVE_LIBYAML:

    class CStrictLoader(_StrictComposition, CParser):
        """Same checks, with libyaml scanning and parsing (about 5x faster).

        `_StrictComposition` comes first so its Python composer, with the
        checks, replaces CParser's C composer; only events come from C.
        """

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        def peek_event(self) -> Any:
            return CParser.peek_event(self)

    LOADERS: tuple[type[_StrictComposition], ...] = (CStrictLoader, StrictLoader)
else:  # PyYAML built without libyaml
    LOADERS = (StrictLoader,)


def load_yaml(text: str, loader_class: type[_StrictComposition] = LOADERS[0]) -> Any:
    """Parse one YAML document; raise yaml.YAMLError on anything refused."""
    loader: Any = loader_class(text)  # type: ignore[call-arg]  # each loader takes the stream
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
