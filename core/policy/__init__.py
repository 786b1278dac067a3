"""Default-deny policy: rules as data, indexed, evaluated by one pure function.

`load_rules` parses and validates rule data (a corrupt rule file is refused,
so the core cannot start with a policy it does not understand); `RuleIndex`
indexes rules by (principal kind, method), (principal kind, service) and
(principal kind, principal id, method) so a decision costs a few dict lookups
whatever the number of plugins or rules; `evaluate` is the pure decision.
"""

from vivified.core.policy._engine import (
    DEFAULT_DENY_RULE,
    Decision,
    PolicyInput,
    evaluate,
)
from vivified.core.policy._rules import (
    PolicyError,
    Rule,
    RuleIndex,
    load_default_rules,
    load_rules,
)

__all__ = [
    "DEFAULT_DENY_RULE",
    "Decision",
    "PolicyError",
    "PolicyInput",
    "Rule",
    "RuleIndex",
    "evaluate",
    "load_default_rules",
    "load_rules",
]
