"""Policy rules as data, and their index."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

PRINCIPAL_KINDS = frozenset({"anonymous", "plugin", "operator", "core", "user"})
_EFFECTS = frozenset({"allow", "deny"})
_KEYS = frozenset(
    {"id", "description", "effect", "principal_kinds", "principal_ids", "methods", "services", "required_traits"}
)


class PolicyError(Exception):
    """Rule data that cannot be understood. The core refuses to start with it."""


@dataclass(frozen=True)
class Rule:
    """One policy rule. A rule matches a call when the principal's kind is in
    `principal_kinds`, its id is in `principal_ids` (when given), and the full
    method is in `methods` or its service in `services`. An allow rule further
    needs every trait in `required_traits`."""

    id: str
    effect: str
    principal_kinds: frozenset[str]
    methods: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    principal_ids: frozenset[str] = frozenset()
    required_traits: frozenset[str] = frozenset()
    description: str = ""


def _strings(raw: Mapping[str, Any], key: str, rule_id: str) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"rule {rule_id!r}: {key!r} must be a list of non-empty strings")
    return frozenset(value)


def _parse_rule(raw: object, position: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"rule #{position}: must be an object")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise PolicyError(f"rule #{position}: 'id' must be a non-empty string")
    unknown = set(raw) - _KEYS
    if unknown:
        raise PolicyError(f"rule {rule_id!r}: unknown keys {sorted(unknown)}")
    effect = raw.get("effect")
    if effect not in _EFFECTS:
        raise PolicyError(f"rule {rule_id!r}: 'effect' must be 'allow' or 'deny'")
    kinds = _strings(raw, "principal_kinds", rule_id)
    if not kinds or not kinds <= PRINCIPAL_KINDS:
        raise PolicyError(f"rule {rule_id!r}: 'principal_kinds' must name some of {sorted(PRINCIPAL_KINDS)}")
    methods = _strings(raw, "methods", rule_id)
    services = _strings(raw, "services", rule_id)
    if not methods and not services:
        raise PolicyError(f"rule {rule_id!r}: needs 'methods' or 'services'")
    for method in methods:
        if not method.startswith("/") or method.count("/") != 2:
            raise PolicyError(f"rule {rule_id!r}: method {method!r} must look like /package.Service/Method")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise PolicyError(f"rule {rule_id!r}: 'description' must be a string")
    return Rule(
        id=rule_id,
        effect=effect,
        principal_kinds=kinds,
        methods=methods,
        services=services,
        principal_ids=_strings(raw, "principal_ids", rule_id),
        required_traits=_strings(raw, "required_traits", rule_id),
        description=description,
    )


def load_rules(data: bytes | str) -> tuple[Rule, ...]:
    """Parse rule data (a JSON list of rule objects). Raises PolicyError."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"policy rules are not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise PolicyError("policy rules must be a JSON list")
    rules = tuple(_parse_rule(item, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise PolicyError(f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return rules


def load_default_rules(path: pathlib.Path | None = None) -> tuple[Rule, ...]:
    """The packaged rules, or the operator's rule file when `path` is given."""
    if path is not None:
        try:
            return load_rules(path.read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    return load_rules(resources.files("vivified.core.policy").joinpath("rules.json").read_bytes())


@dataclass
class RuleIndex:
    """Rules indexed by what a call presents, so lookups never scan."""

    by_method: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    by_service: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    by_principal_method: dict[tuple[str, str, str], list[Rule]] = field(default_factory=dict)
    by_principal_service: dict[tuple[str, str, str], list[Rule]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleIndex:
        index = cls()
        for rule in rules:
            index.add(rule)
        return index

    def add(self, rule: Rule) -> None:
        for kind in rule.principal_kinds:
            if rule.principal_ids:
                for pid in rule.principal_ids:
                    for method in rule.methods:
                        self.by_principal_method.setdefault((kind, pid, method), []).append(rule)
                    for service in rule.services:
                        self.by_principal_service.setdefault((kind, pid, service), []).append(rule)
            else:
                for method in rule.methods:
                    self.by_method.setdefault((kind, method), []).append(rule)
                for service in rule.services:
                    self.by_service.setdefault((kind, service), []).append(rule)

    def candidates(self, kind: str, principal_id: str, service: str, method: str) -> Sequence[Rule]:
        found: list[Rule] = []
        for hit in (
            self.by_method.get((kind, method)),
            self.by_service.get((kind, service)),
            self.by_principal_method.get((kind, principal_id, method)),
            self.by_principal_service.get((kind, principal_id, service)),
        ):
            if hit:
                found.extend(hit)
        return found
