"""Report-only policy rules through a real core (issue 16 §5): a report-only
deny rule lets the call through with one audit record saying what it would
have done, counted in metrics; the same rule enforced denies; a rules file
that marks a built-in rule or default deny report-only is refused at start."""

from __future__ import annotations

import json
import pathlib
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.clients import admitted_plugin, audit_rows, error_info, operator_channel, plugin_channel
from support.processes import CoreProcess, core_running, run_vivified
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.policy import packaged_rules

pytestmark = [pytest.mark.e2e]

LIST_PLUGINS = "/vivified.admin.v1.PluginAdminService/ListPlugins"
SINCE = "2026-11-30T09:00:00+00:00"
FREEZE = {
    "id": "ops-freeze-plugin-listing",
    "description": "an operator's new rule, rolled out report-only first",
    "effect": "deny",
    "principal_kinds": ["operator"],
    "methods": [LIST_PLUGINS],
}
PLUGIN_LISTING = {
    "id": "plugins-may-list-plugins",
    "effect": "allow",
    "principal_kinds": ["plugin"],
    "methods": [LIST_PLUGINS],
}


def _packaged() -> list[dict[str, object]]:
    path = pathlib.Path(__file__).resolve().parents[3] / "core" / "policy" / "rules.json"
    rules: list[dict[str, object]] = json.loads(path.read_text())
    assert {r["id"] for r in rules} == {r.id for r in packaged_rules()}
    return rules


def _policy_file(tmp: pathlib.Path, name: str, *extra: dict[str, object]) -> pathlib.Path:
    path = tmp / name
    path.write_text(json.dumps([*_packaged(), *extra]))
    return path


def _report_only_count(core: CoreProcess, decision: str, rule: str) -> float:
    with urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vivified_policy_report_only_total" and sample.labels == {
                "decision": decision,
                "rule": rule,
            }:
                return float(sample.value)
    return 0.0


async def _list_plugins(core: CoreProcess) -> admin_pb.ListPluginsResponse:
    async with operator_channel(core) as channel:
        return await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)


@pytest.fixture
def report_only_core(tmp_path: pathlib.Path) -> Iterator[CoreProcess]:
    policy = _policy_file(
        tmp_path, "rollout.json", {**FREEZE, "report_only_since": SINCE}, {**PLUGIN_LISTING, "report_only_since": SINCE}
    )
    with core_running(tmp_path / "data", "--policy-file", str(policy)) as core:
        yield core


@pytest.mark.asyncio
async def test_report_only_deny_rule_lets_the_call_through_audited_as_would_deny(
    report_only_core: CoreProcess,
) -> None:
    core = report_only_core
    assert f"policy rule {FREEZE['id']} is report-only since {SINCE}" in core.log()
    before = _report_only_count(core, "would_deny", str(FREEZE["id"]))

    await _list_plugins(core)  # allowed: the deny rule only reports

    rows = audit_rows(core, action=LIST_PLUGINS, actor="operator:admin")
    assert len(rows) == 1
    row = rows[0]
    assert (row.decision, row.outcome, row.rule_id) == ("allow", "OK", "operator-plugin-admin")
    assert json.loads(row.detail) == {"report_only": "would_deny", "report_only_rule_id": FREEZE["id"]}
    assert _report_only_count(core, "would_deny", str(FREEZE["id"])) == before + 1


@pytest.mark.asyncio
async def test_report_only_allow_rule_does_not_allow_and_is_audited_as_would_allow(
    report_only_core: CoreProcess,
) -> None:
    core = report_only_core
    plugin = await admitted_plugin(core, "lister")
    async with plugin_channel(core, plugin) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(denied.value)
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "default-deny")
    rows = audit_rows(core, action=LIST_PLUGINS, actor="plugin:lister")
    assert len(rows) == 1 and rows[0].decision == "deny" and rows[0].rule_id == "default-deny"
    assert json.loads(rows[0].detail) == {"report_only": "would_allow", "report_only_rule_id": PLUGIN_LISTING["id"]}
    assert _report_only_count(core, "would_allow", str(PLUGIN_LISTING["id"])) == 1


@pytest.mark.asyncio
async def test_the_same_rule_enforced_denies_with_reason_rule_and_one_record(tmp_path: pathlib.Path) -> None:
    policy = _policy_file(tmp_path, "enforced.json", FREEZE)
    with core_running(tmp_path / "data", "--policy-file", str(policy)) as core:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _list_plugins(core)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(denied.value)
        assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", FREEZE["id"])
        rows = audit_rows(core, action=LIST_PLUGINS)
        assert len(rows) == 1
        assert (rows[0].decision, rows[0].outcome, rows[0].rule_id) == ("deny", "PERMISSION_DENIED", FREEZE["id"])
        assert rows[0].detail is None or "report_only" not in json.loads(rows[0].detail)
        assert _report_only_count(core, "would_deny", str(FREEZE["id"])) == 0


def test_cli_shows_which_rules_are_report_only_and_since_when(tmp_path: pathlib.Path) -> None:
    policy = _policy_file(tmp_path, "rollout.json", {**FREEZE, "report_only_since": "2026-11-30T10:00:00+01:00"})
    shown = run_vivified("policy", "rules", "--report-only", "--json", "--policy-file", str(policy))
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert listed["source"] == str(policy)
    assert [(r["id"], r["mode"], r["report_only_since"], r["builtin"]) for r in listed["rules"]] == [
        (FREEZE["id"], "report-only", SINCE, False)
    ]
    text = run_vivified("policy", "rules", "--policy-file", str(policy))
    assert text.returncode == 0, text.stderr
    assert "report-only: 1" in text.stdout.splitlines()[0]
    lines = {line.split()[0]: line for line in text.stdout.splitlines()[1:]}
    assert lines[str(FREEZE["id"])].endswith(f"report-only since {SINCE}")
    assert lines["operator-plugin-admin"].endswith("enforced")


@pytest.mark.parametrize(
    ("marked", "needle"),
    [
        ({**_packaged()[3], "report_only_since": SINCE}, "is a built-in rule and cannot be report-only"),
        ({**FREEZE, "id": "default-deny", "report_only_since": SINCE}, "'default-deny': this id is reserved"),
        ({**FREEZE, "id": "status-gate", "report_only_since": SINCE}, "'status-gate': this id is reserved"),
        ({**FREEZE, "id": "authentication", "report_only_since": SINCE}, "'authentication': this id is reserved"),
        ({**FREEZE, "id": "manifest:a:calls:b:x", "report_only_since": SINCE}, "'manifest:a:calls:b:x': this id is"),
        ({**FREEZE, "report_only_since": "2026-11-30T09:00:00"}, "must be an ISO 8601 time with a UTC offset"),
    ],
    ids=["built-in", "default-deny", "status-gate", "authentication", "manifest-lane", "naive-time"],
)
def test_a_rules_file_relaxing_what_is_not_an_operator_rule_is_refused_at_start(
    tmp_path: pathlib.Path, marked: dict[str, object], needle: str
) -> None:
    rules = [r for r in _packaged() if r["id"] != marked["id"]]
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps([*rules, marked]))
    data_dir = tmp_path / "data"
    result = run_vivified(
        "core",
        "--data-dir",
        str(data_dir),
        "--policy-file",
        str(policy),
        "--listen",
        "127.0.0.1:0",
        "--bootstrap",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        timeout=30,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(policy) in errors[0] and needle in errors[0], result.stderr
    assert not (data_dir / "run" / "core.json").exists()
