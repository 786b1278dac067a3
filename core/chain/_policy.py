"""Policy layer: default deny, and an evaluation error denies too.

What a report-only rule would have changed goes into the call's one audit
record (`report_only`: `would_deny`/`would_allow`, `report_only_rule_id`)
and to `on_decision` (metrics); the call itself goes as the enforced rules
decided.

A caller with no identity at all (an anonymous peer on the bootstrap port:
no client certificate, no bearer token or API key) that the policy refuses
is answered UNAUTHENTICATED (IDENTITY_MISSING, with the deciding rule's id),
not PERMISSION_DENIED: what it lacks is an identity, and a credential may be
all it needs (REST: 401, not 403). It is the same single denial, recorded
once; a caller with an identity (a certificate, a verified token) that the
policy refuses stays PERMISSION_DENIED. An evaluation error stays
PERMISSION_DENIED (POLICY_ERROR) for everyone."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._outcome import Denied
from vivified.core.kinds import PrincipalKind
from vivified.core.policy import Decision, PolicyInput, RuleIndex, evaluate

_log = logging.getLogger(__name__)

_MAX_REMEMBERED = 10_000
"""Decisions remembered per rule index; past this the memory starts over."""

_Key = tuple[str, str, frozenset[str], str, str]


class PolicyLayer:
    """Evaluates the call against the rule index; only an allow proceeds."""

    def __init__(
        self,
        index: Callable[[], RuleIndex],
        on_decision: Callable[[Decision], None],
    ) -> None:
        self._index = index
        self._on_decision = on_decision
        # `evaluate` is pure, so a decision holds for as long as the index it
        # came from is current; a rebuilt index (a new object) starts afresh.
        self._decided: dict[_Key, Decision] = {}
        self._decided_by: RuleIndex | None = None

    def _decide(
        self, kind: PrincipalKind, principal_id: str, traits: frozenset[str], service: str, method: str
    ) -> Decision:
        index = self._index()
        if index is not self._decided_by:
            self._decided, self._decided_by = {}, index
        key = (kind, principal_id, traits, service, method)
        decision = self._decided.get(key)
        if decision is None:
            decision = evaluate(index, PolicyInput(kind, principal_id, traits, service, method))
            if len(self._decided) >= _MAX_REMEMBERED:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        principal = call.principal
        try:
            if principal is None:
                raise RuntimeError("policy reached without a principal")
            decision = self._decide(principal.kind, principal.id, call.traits, call.service, call.method)
        except Exception:  # noqa: BLE001 - an evaluation error denies (fail closed)
            _log.exception("policy evaluation failed for %s; denying", call.method)
            decision = Decision(False, "POLICY_ERROR", "policy-error", "the policy could not be evaluated")
        self._on_decision(decision)
        call.rule_id = decision.rule_id
        if decision.report_only:
            call.extra["report_only"] = decision.report_only
            call.extra["report_only_rule_id"] = decision.report_rule_id
        if not decision.allowed:
            if (
                principal is not None
                and principal.kind == PrincipalKind.ANONYMOUS
                and decision.reason != "POLICY_ERROR"
            ):
                raise Denied(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"sign in first: {decision.message}",
                    reason="IDENTITY_MISSING",
                    rule_id=decision.rule_id,
                    domain="vivified.auth",
                )
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                decision.message,
                reason=decision.reason,
                rule_id=decision.rule_id,
                domain="vivified.policy",
            )
        await proceed(call)
