"""The pure side of report-only rules: parsing, and what `evaluate` decides
and reports (the e2e file drives them through a real core)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from vivified.core.gateway import PolicySet
from vivified.core.policy import Decision, PolicyError, PolicyInput, RuleIndex, evaluate, load_rules

SINCE = "2026-11-30T09:00:00Z"
ALLOW = {"id": "ops-all", "effect": "allow", "principal_kinds": ["operator"], "services": ["a.v1.S"]}
DENY = {"id": "ops-no-x", "effect": "deny", "principal_kinds": ["operator"], "methods": ["/a.v1.S/X"]}


def _index(*rules: dict[str, object]) -> RuleIndex:
    return RuleIndex.build(load_rules(json.dumps(list(rules))))


def _ask(index: RuleIndex, method: str, kind: str = "operator") -> Decision:
    return evaluate(index, PolicyInput(kind, "admin", frozenset(), "a.v1.S", method))


def test_report_only_since_is_parsed_as_utc() -> None:
    (rule,) = load_rules(json.dumps([{**DENY, "report_only_since": "2026-11-30T10:00:00+01:00"}]))
    assert rule.report_only and rule.report_only_since == dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)
    (plain,) = load_rules(json.dumps([DENY]))
    assert not plain.report_only


def test_report_only_deny_does_not_change_the_decision_and_says_what_it_would_do() -> None:
    index = _index(ALLOW, {**DENY, "report_only_since": SINCE})
    decision = _ask(index, "/a.v1.S/X")
    assert (decision.allowed, decision.rule_id) == (True, "ops-all")
    assert (decision.report_only, decision.report_rule_id) == ("would_deny", "ops-no-x")
    other = _ask(index, "/a.v1.S/Y")  # the rule does not match: nothing to report
    assert other.allowed and other.report_only == ""
    enforced = _ask(_index(ALLOW, DENY), "/a.v1.S/X")
    assert (enforced.allowed, enforced.rule_id, enforced.report_only) == (False, "ops-no-x", "")


def test_report_only_allow_never_allows() -> None:
    index = _index({**ALLOW, "report_only_since": SINCE})
    decision = _ask(index, "/a.v1.S/Y")
    assert (decision.allowed, decision.rule_id) == (False, "default-deny")
    assert (decision.report_only, decision.report_rule_id) == ("would_allow", "ops-all")


@pytest.mark.parametrize(
    "rule_id", ["default-deny", "policy-error", "authentication", "status-gate", "rate-limit", "manifest:x:publishes"]
)
def test_reserved_ids_are_refused(rule_id: str) -> None:
    with pytest.raises(PolicyError, match="reserved"):
        load_rules(json.dumps([{**DENY, "id": rule_id}]))


@pytest.mark.parametrize("since", ["2026-11-30T09:00:00", "yesterday", 12, None])
def test_report_only_since_must_be_an_aware_time(since: object) -> None:
    with pytest.raises(PolicyError, match="report_only_since"):
        load_rules(json.dumps([{**DENY, "report_only_since": since}]))


def test_the_operator_lane_reports_a_report_only_user_rule() -> None:
    seen: list[Decision] = []
    user_rule = {
        "id": "users-no-store",
        "effect": "deny",
        "principal_kinds": ["user"],
        "methods": ["/vivified.storage.v1.StoragePluginService/StoreObject"],
        "report_only_since": SINCE,
    }
    allow = {
        "id": "users-store",
        "effect": "allow",
        "principal_kinds": ["user"],
        "methods": ["/vivified.storage.v1.StoragePluginService/StoreObject"],
    }
    lane = PolicySet(load_rules(json.dumps([allow, user_rule])), on_report_only=seen.append)
    rule = lane.check_user_operation(
        "usr_1", frozenset(), "vivified.storage.v1.StoragePluginService/StoreObject", reason="POLICY_DENIED"
    )
    assert rule == "users-store"
    assert [(d.report_only, d.report_rule_id) for d in seen] == [("would_deny", "users-no-store")]
