"""Policy rules as data, and their index."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from vivified.core.kinds import PrincipalKind

PRINCIPAL_KINDS = frozenset(kind.value for kind in PrincipalKind)
_EFFECTS = frozenset({"allow", "deny"})
_KEYS = frozenset(
    {
        "id",
        "description",
        "effect",
        "principal_kinds",
        "principal_ids",
        "methods",
        "services",
        "required_traits",
        "report_only_since",
    }
)

RESERVED_RULE_IDS = frozenset(
    {"default-deny", "policy-error", "authentication", "status-gate", "rate-limit", "break-glass"}
)
"""Ids of decisions that are not rules of a file: the engine's default deny and
its fail-closed error, and the chain layers before policy. A rules file may not
mark them report-only (nor use them at all, so a record's rule id is never
ambiguous)."""

MANIFEST_RULE_PREFIX = "manifest:"
"""Rules derived from approved manifests (lane allowlists) carry this prefix."""


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
    principal_kinds: frozenset[PrincipalKind]
    methods: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    principal_ids: frozenset[str] = frozenset()
    required_traits: frozenset[str] = frozenset()
    description: str = ""
    report_only_since: dt.datetime | None = None
    """When set, the rule is in report-only mode (since this UTC time): it is
    evaluated and what it would have changed is audited and counted, but it
    never changes a decision (see `evaluate`)."""

    @property
    def report_only(self) -> bool:
        return self.report_only_since is not None


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
    if rule_id in RESERVED_RULE_IDS or rule_id.startswith(MANIFEST_RULE_PREFIX):
        raise PolicyError(
            f"rule {rule_id!r}: this id is reserved for a decision the core makes itself "
            f"({', '.join(sorted(RESERVED_RULE_IDS))}, {MANIFEST_RULE_PREFIX}*); a rules file cannot define, "
            "relax or put it in report-only mode"
        )
    return Rule(
        id=rule_id,
        effect=effect,
        principal_kinds=frozenset(PrincipalKind(kind) for kind in kinds),
        methods=methods,
        services=services,
        principal_ids=_strings(raw, "principal_ids", rule_id),
        required_traits=_strings(raw, "required_traits", rule_id),
        description=description,
        report_only_since=_since(raw, rule_id),
    )


def _since(raw: Mapping[str, Any], rule_id: str) -> dt.datetime | None:
    if "report_only_since" not in raw:
        return None
    value = raw["report_only_since"]
    problem = (
        f"rule {rule_id!r}: 'report_only_since' must be an ISO 8601 time with a UTC offset, e.g. 2026-01-31T09:00:00Z"
    )
    if not isinstance(value, str):
        raise PolicyError(problem)
    try:
        since = dt.datetime.fromisoformat(value)
    except ValueError:
        raise PolicyError(problem) from None
    if since.tzinfo is None:
        raise PolicyError(problem)
    return since.astimezone(dt.UTC)


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


def rule_summary(rule: Rule) -> dict[str, object]:
    """A rule as plain JSON data (lists sorted), for the CLI and digests."""
    return {
        "id": rule.id,
        "effect": rule.effect,
        "mode": "report-only" if rule.report_only else "enforced",
        "report_only_since": rule.report_only_since.isoformat() if rule.report_only_since else None,
        "principal_kinds": sorted(rule.principal_kinds),
        "principal_ids": sorted(rule.principal_ids),
        "methods": sorted(rule.methods),
        "services": sorted(rule.services),
        "required_traits": sorted(rule.required_traits),
        "description": rule.description,
    }


def rules_sha256(rules: Iterable[Rule]) -> str:
    """A digest of what the rules decide (order and formatting of the file
    aside), so a record of the policy in force shows when it changed."""
    canonical = json.dumps([rule_summary(r) for r in rules], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def packaged_rules() -> tuple[Rule, ...]:
    """The rules shipped with the core (`rules.json`), all of them enforced."""
    rules = load_rules(resources.files("vivified.core.policy").joinpath("rules.json").read_bytes())
    _check_report_only(rules, frozenset(r.id for r in rules), "the packaged rules")
    return rules


def _check_report_only(rules: Iterable[Rule], builtin: frozenset[str], source: str) -> None:
    """Report-only may relax only a rule an operator added: never a built-in
    rule (whose id is in the packaged rules). Default deny, authentication,
    the status gate and the manifest-derived lane rules are not rules a file
    may name at all (`RESERVED_RULE_IDS`, `MANIFEST_RULE_PREFIX`)."""
    for rule in rules:
        if rule.report_only and rule.id in builtin:
            raise PolicyError(
                f"{source}: rule {rule.id!r} is a built-in rule and cannot be report-only "
                "(report-only is for rules an operator adds; remove 'report_only_since' from it)"
            )


def load_default_rules(path: pathlib.Path | None = None) -> tuple[Rule, ...]:
    """The packaged rules, or the operator's rule file when `path` is given."""
    builtin = packaged_rules()
    if path is None:
        return builtin
    try:
        rules = load_rules(path.read_bytes())
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
    _check_report_only(rules, frozenset(r.id for r in builtin), f"policy file {path}")
    return rules


@dataclass
class RuleIndex:
    """Rules indexed by what a call presents, so lookups never scan."""

    by_method: dict[tuple[PrincipalKind, str], list[Rule]] = field(default_factory=dict)
    by_service: dict[tuple[PrincipalKind, str], list[Rule]] = field(default_factory=dict)
    by_principal_method: dict[tuple[PrincipalKind, str, str], list[Rule]] = field(default_factory=dict)
    by_principal_service: dict[tuple[PrincipalKind, str, str], list[Rule]] = field(default_factory=dict)
    shadow: RuleIndex | None = None
    """Every rule, report-only ones enforced, when there are report-only rules:
    what the policy would decide once they are enforced."""
    report_only: tuple[Rule, ...] = ()

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleIndex:
        rules = tuple(rules)
        index = cls()
        for rule in rules:
            if not rule.report_only:
                index.add(rule)
        index.report_only = tuple(r for r in rules if r.report_only)
        if index.report_only:
            index.shadow = cls()
            for rule in rules:
                index.shadow.add(rule)
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

    def candidates(self, kind: PrincipalKind, principal_id: str, service: str, method: str) -> Sequence[Rule]:
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
