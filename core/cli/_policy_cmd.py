"""`vivified policy rules`: the policy rules a core started with these
settings enforces, and which of them are in report-only mode and since when.

The rules file is found the way `vivified core` finds it (`--policy-file`,
`VIVIFIED_POLICY_FILE` or the config file; else the packaged rules) and is
loaded with the core's own checks, so a file the core would refuse is
refused here with the same message."""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping

from vivified.core.cli._settings import add_core_flags, resolved_settings
from vivified.core.policy import Rule, load_default_rules, packaged_rules, rule_summary


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="show the policy rules and which are report-only")
    verbs = policy.add_subparsers(dest="verb", required=True)
    rules = verbs.add_parser(
        "rules",
        help="list the rules (id, effect, enforced or report-only since when)",
        description="The policy rules the core loads with these settings. A rule with 'report_only_since' "
        "(ISO 8601 time) is report-only: evaluated, and what it would have changed is audited "
        "(report_only=would_deny|would_allow, report_only_rule_id) and counted (vivified_policy_report_only), "
        "but calls go as the enforced rules decide. Only rules an operator added may be report-only.",
    )
    rules.add_argument("--report-only", action="store_true", help="only the rules in report-only mode")
    rules.add_argument("--json", action="store_true", help="print JSON")
    add_core_flags(rules)


def _entry(rule: Rule, builtin: frozenset[str]) -> dict[str, object]:
    return {**rule_summary(rule), "builtin": rule.id in builtin}


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    setting = resolved_settings(args, environ).get("policy_file")
    path = pathlib.Path(str(setting.value)) if setting is not None and setting.value is not None else None
    rules = load_default_rules(path)
    builtin = frozenset(r.id for r in packaged_rules())
    shown = [r for r in rules if r.report_only or not args.report_only]
    source = str(path) if path is not None else "packaged"
    if args.json:
        out.append(json.dumps({"source": source, "rules": [_entry(r, builtin) for r in shown]}, indent=2))
        return 0
    out.append(f"rules from {source}: {len(rules)}, report-only: {sum(r.report_only for r in rules)}")
    for rule in shown:
        mode = f"report-only since {rule.report_only_since.isoformat()}" if rule.report_only_since else "enforced"
        out.append(f"{rule.id:36} {rule.effect:5} {mode}")
    return 0
