"""The one pure policy decision function."""

from __future__ import annotations

from dataclasses import dataclass

from vivified.core.policy._rules import RuleIndex

DEFAULT_DENY_RULE = "default-deny"


@dataclass(frozen=True)
class PolicyInput:
    """What a decision may look at: who calls what, with which traits."""

    principal_kind: str
    principal_id: str
    traits: frozenset[str]
    service: str
    method: str


@dataclass(frozen=True)
class Decision:
    """An allow or deny, with the stable reason and the deciding rule's id."""

    allowed: bool
    reason: str
    rule_id: str
    message: str


def evaluate(index: RuleIndex, request: PolicyInput) -> Decision:
    """Decide a call. Deny rules win over allow rules; no matching allow rule
    means deny (`default-deny`). Pure: same inputs, same decision."""
    candidates = index.candidates(request.principal_kind, request.principal_id, request.service, request.method)
    allow = None
    missing: tuple[str, frozenset[str]] | None = None
    for rule in candidates:
        if rule.effect == "deny":
            return Decision(False, "POLICY_DENIED", rule.id, f"denied by rule {rule.id}")
        lacking = rule.required_traits - request.traits
        if lacking:
            missing = (rule.id, lacking)
        elif allow is None:
            allow = rule
    if allow is not None:
        return Decision(True, "", allow.id, f"allowed by rule {allow.id}")
    if missing is not None:
        rule_id, lacking = missing
        return Decision(
            False, "POLICY_DENIED", rule_id, f"rule {rule_id} requires trait(s) {', '.join(sorted(lacking))}"
        )
    return Decision(
        False,
        "POLICY_DENIED",
        DEFAULT_DENY_RULE,
        f"no policy rule allows {request.principal_kind} principals to call {request.method}",
    )
