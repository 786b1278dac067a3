"""`vivified.core.services` is the one list of what the core serves: each
entry's rules exist in the packaged rules and name its service, every packaged
rule that names a served service is declared by that service's entry, and the
per-method facts name real methods of their service with the audit
behaviour the chain gives them."""

from __future__ import annotations

import json
from importlib import resources

from google.protobuf import descriptor_pool

from vivified.admin.v1 import plugin_admin_pb2
from vivified.core.services import METHODS, NAMES_PLUGIN, SERVED, plugin_named
from vivified.manifest.v1 import manifest_pb2
from vivified.registry.v1 import registry_pb2


def _packaged_rules() -> list[dict[str, object]]:
    return json.loads(resources.files("vivified.core.policy").joinpath("rules.json").read_text())


def _services_of(rule: dict[str, object]) -> set[str]:
    named = set(rule.get("services", []))  # type: ignore[arg-type]
    return named | {str(m).split("/")[1] for m in rule.get("methods", [])}  # type: ignore[union-attr]


def test_each_served_service_declares_the_rules_that_grant_it() -> None:
    rules = {str(rule["id"]): _services_of(rule) for rule in _packaged_rules()}
    for served in SERVED:
        assert served.rules, f"{served.name} names no rule: no caller could reach it"
        for rule_id in served.rules:
            assert rule_id in rules, f"{served.name}: no rule {rule_id!r} in rules.json"
            assert served.name in rules[rule_id], f"rule {rule_id!r} does not name {served.name}"
        granting = {rule_id for rule_id, services in rules.items() if served.name in services}
        assert granting == set(served.rules), f"{served.name}: rules.json grants it by {sorted(granting)}"


def test_method_facts_name_real_methods_of_their_service() -> None:
    pool = descriptor_pool.Default()
    names = [s.name for s in SERVED]
    assert len(names) == len(set(names))
    for served in SERVED:
        methods = {m.name: m for m in pool.FindServiceByName(served.name).methods}
        for method, facts in served.methods.items():
            assert method in methods, f"{served.name} has no method {method}"
            if facts.audit_at_end or facts.record_when_cancelled:
                assert methods[method].server_streaming or methods[method].client_streaming
            if facts.record_when_cancelled:
                assert facts.audit_at_end
    assert METHODS["/vivified.egress.v1.EgressProxyService/Connect"].record_when_cancelled
    assert METHODS["/vivified.events.v1.EventBusService/Subscribe"].audit_at_end
    assert not METHODS["/vivified.events.v1.EventBusService/Subscribe"].record_when_cancelled
    assert METHODS["/grpc.health.v1.Health/Check"].unaudited_when_ok
    assert METHODS["/vivified.registry.v1.PluginRegistryService/Heartbeat"].unaudited_when_ok
    assert "/grpc.health.v1.Health/Watch" not in METHODS


def test_requests_naming_a_plugin_are_declared_so() -> None:
    """Every served method whose request has a `plugin_id` or `manifest` field
    declares `NAMES_PLUGIN`, so its audit record's resource is that plugin."""
    pool = descriptor_pool.Default()
    for served in SERVED:
        for method in pool.FindServiceByName(served.name).methods:
            fields = method.input_type.fields_by_name
            names_one = "plugin_id" in fields or "manifest" in fields
            declared = served.methods.get(method.name) is NAMES_PLUGIN or (
                served.methods.get(method.name) is not None and served.methods[method.name].resource is plugin_named
            )
            assert names_one == declared, f"{served.name}/{method.name}"
    assert plugin_named(plugin_admin_pb2.EnablePluginRequest(plugin_id="x")) == "plugin/x"
    assert plugin_named(registry_pb2.RegisterRequest(manifest=manifest_pb2.PluginManifest(id="y"))) == "plugin/y"
    assert plugin_named(plugin_admin_pb2.EnablePluginRequest()) is None
