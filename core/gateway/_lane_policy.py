"""Operator-lane policy: what approved manifests declare becomes rules.

A caller may call `target`'s `method` only when the caller's manifest lists it
under `calls` and the target's manifest lists it under `provides`, both
plugins being approved and not revoked. Each such pair is one allow rule with a stable id; the
rules sit in the same index as the packaged rules, keyed by caller, so a
decision costs the same whatever the number of plugins.

A user's call (directly, or through a plugin with a delegation token) must
also be allowed for the user: rules for `user` principals on the contract
operation (`/pkg.Service/Method`, usually with `required_traits`), default deny."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vivified.core.chain import PrincipalKind, annotate
from vivified.core.errors import PermissionDenied
from vivified.core.policy import Decision, PolicyInput, Rule, RuleIndex, evaluate
from vivified.core.registry import ACTIVE, APPROVED, DISABLED, PluginRecord


def lane_resource(target: str, method: str) -> str:
    """The policy resource of a call to `target`'s `method` (`pkg.Service/Method`)."""
    return f"plugin:{target}/{method}"


def lane_rules(records: Iterable[PluginRecord]) -> list[Rule]:
    # A disabled plugin keeps its declarations, and so does one approved (again)
    # but not registered yet: a call to either is answered UNAVAILABLE by the
    # forwarder rather than looking undeclared. Revoked ones (also after a
    # deregistration) have none.
    active = {r.plugin_id: r for r in records if r.status in (APPROVED, ACTIVE, DISABLED)}
    rules = []
    for caller in active.values():
        for call in caller.manifest.calls:
            target = active.get(call.plugin_id)
            if target is None or call.method not in target.manifest.provides:
                continue
            rules.append(
                Rule(
                    id=f"manifest:{caller.plugin_id}:calls:{call.plugin_id}:{call.method}",
                    effect="allow",
                    principal_kinds=frozenset({PrincipalKind.PLUGIN}),
                    principal_ids=frozenset({caller.plugin_id}),
                    methods=frozenset({lane_resource(call.plugin_id, call.method)}),
                    description="declared by the caller's calls and the target's provides",
                )
            )
    return rules


class PolicySet:
    """The packaged rules plus the rules the active plugins' manifests imply,
    rebuilt whenever a plugin's status changes. What a report-only rule
    would have changed in a lane decision goes into the call's audit record
    and to `on_report_only` (metrics), as in the chain's policy layer."""

    def __init__(self, base: Iterable[Rule], *, on_report_only: Callable[[Decision], None]) -> None:
        self._base = tuple(base)
        self._index = RuleIndex.build(self._base)
        self._provided: frozenset[tuple[str, str]] = frozenset()
        self._on_report_only = on_report_only

    def _evaluate(self, request: PolicyInput) -> Decision:
        decision = evaluate(self._index, request)
        if decision.report_only:
            annotate(report_only=decision.report_only, report_only_rule_id=decision.report_rule_id)
            self._on_report_only(decision)
        return decision

    def index(self) -> RuleIndex:
        return self._index

    def rebuild(self, records: Iterable[PluginRecord]) -> None:
        records = list(records)
        self._index = RuleIndex.build((*self._base, *lane_rules(records)))
        self._provided = frozenset(
            (r.plugin_id, method) for r in records if r.status in (ACTIVE, DISABLED) for method in r.manifest.provides
        )

    def check_call(self, caller: str, traits: frozenset[str], target: str, method: str) -> str:
        """Raise PermissionDenied (with the rule id) unless the call is declared; returns the rule id."""
        decision = self._evaluate(
            PolicyInput(PrincipalKind.PLUGIN, caller, traits, f"plugin:{target}", lane_resource(target, method))
        )
        if not decision.allowed:
            raise PermissionDenied(
                f"{caller} may not call {method} on {target}: not declared in both approved manifests",
                reason="POLICY_DENIED",
                domain="vivified.gateway",
                metadata={"rule_id": decision.rule_id},
            )
        return decision.rule_id

    def check_user_operation(self, user_id: str, traits: frozenset[str], method: str, *, reason: str) -> str:
        """Raise PermissionDenied with `reason` unless a rule lets this user call
        `method` (`pkg.Service/Method`); returns the rule id."""
        service = method.partition("/")[0]
        decision = self._evaluate(PolicyInput(PrincipalKind.USER, user_id, traits, service, f"/{method}"))
        if not decision.allowed:
            raise PermissionDenied(
                f"user {user_id} may not call {method}: {decision.message}",
                reason=reason,
                domain="vivified.gateway",
                metadata={"rule_id": decision.rule_id},
            )
        return decision.rule_id

    def check_user_call(self, user_id: str, traits: frozenset[str], target: str, method: str) -> str:
        """A user's own call: the user's rule for the operation, and the target's
        approved manifest must provide it. Returns the user rule's id."""
        rule = self.check_user_operation(user_id, traits, method, reason="POLICY_DENIED")
        if (target, method) not in self._provided:
            raise PermissionDenied(
                f"{target} does not provide {method} in its approved manifest",
                reason="POLICY_DENIED",
                domain="vivified.gateway",
                metadata={"rule_id": "manifest-provides"},
            )
        return rule
