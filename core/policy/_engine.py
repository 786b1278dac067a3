"""The one pure policy decision function."""

from __future__ import annotations

from dataclasses import dataclass, replace

from vivified.core.kinds import PrincipalKind
from vivified.core.policy._rules import RuleIndex

DEFAULT_DENY_RULE = "default-deny"


@dataclass(frozen=True)
class PolicyInput:
    """What a decision may look at: who calls what, with which traits."""

    principal_kind: PrincipalKind
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
    report_only: str = ""
    """`would_deny` or `would_allow` when a report-only rule would have
    decided otherwise (the decision itself is unchanged); else empty."""
    report_rule_id: str = ""
    """The report-only rule that would have decided otherwise."""


WOULD_DENY = "would_deny"
WOULD_ALLOW = "would_allow"


def evaluate(index: RuleIndex, request: PolicyInput) -> Decision:
    """Decide a call. Deny rules win over allow rules; no matching allow rule
    means deny (`default-deny`). Pure: same inputs, same decision.

    Report-only rules never change the decision: it comes from the enforced
    rules alone. When the index has report-only rules, the call is decided a
    second time with them enforced; if that outcome differs, the decision
    says so (`report_only`, `report_rule_id`) for audit and metrics. A
    differing outcome can only come from a report-only rule: a would-be deny
    from a report-only deny rule, a would-be allow from a report-only allow
    rule."""
    decision = _decide(index, request)
    if index.shadow is None:
        return decision
    would = _decide(index.shadow, request)
    if would.allowed == decision.allowed:
        return decision
    return replace(decision, report_only=WOULD_ALLOW if would.allowed else WOULD_DENY, report_rule_id=would.rule_id)


def _decide(index: RuleIndex, request: PolicyInput) -> Decision:
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
