"""Default-deny policy: rules as data, indexed, evaluated by one pure function.

`load_rules` parses and validates rule data (a corrupt rule file is refused,
so the core cannot start with a policy it does not understand); `RuleIndex`
indexes rules by (principal kind, method), (principal kind, service) and
(principal kind, principal id, method) so a decision costs a few dict lookups
whatever the number of plugins or rules; `evaluate` is the pure decision.

A rule with `report_only_since` (an ISO 8601 time) is in report-only mode:
evaluated, and what it would have changed (`would_deny` / `would_allow` and
its id) is audited and counted, but the decision is the enforced rules' alone.
Only rules an operator adds may be report-only; a file marking a built-in
rule report-only, or naming default deny, authentication, the status gate or
a manifest-derived rule, is refused at load.
"""

from vivified.core.policy._engine import (
    DEFAULT_DENY_RULE,
    WOULD_ALLOW,
    WOULD_DENY,
    Decision,
    PolicyInput,
    evaluate,
)
from vivified.core.policy._rules import (
    MANIFEST_RULE_PREFIX,
    RESERVED_RULE_IDS,
    PolicyError,
    Rule,
    RuleIndex,
    load_default_rules,
    load_rules,
    packaged_rules,
    rule_summary,
    rules_sha256,
)

__all__ = [
    "DEFAULT_DENY_RULE",
    "MANIFEST_RULE_PREFIX",
    "RESERVED_RULE_IDS",
    "WOULD_ALLOW",
    "WOULD_DENY",
    "Decision",
    "PolicyError",
    "PolicyInput",
    "Rule",
    "RuleIndex",
    "evaluate",
    "load_default_rules",
    "load_rules",
    "packaged_rules",
    "rule_summary",
    "rules_sha256",
]
