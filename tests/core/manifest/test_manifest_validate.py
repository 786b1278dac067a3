"""I2 and the manifest rules: ids, text fields, contracts, traits, PHI/PII, egress."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    DEFAULT_CONTRACTS,
    RESERVED_IDS,
    load_manifest_bytes,
    validate_manifest,
)
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import ComplianceDeclaration, PluginManifest

CATALOGUE = TraitCatalogue.load_default()

BASE: dict[str, Any] = {
    "id": "email-gateway",
    "name": "Email Gateway",
    "version": "1.2.0",
    "description": "Sends email.\nHonours opt-out.",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin", "external_service", "handles_pii", "audit_required"],
    "security": {"allowed_domains": ["smtp.example.com", "*.mail.example.org"]},
    "compliance": {"data_classifications": ["CLASSIFICATION_PII"], "retention_days": 30},
}

PHI: dict[str, Any] = {
    **BASE,
    "id": "records-store",
    "contracts": ["vivified.storage.v1.StoragePluginService"],
    "traits": ["storage_plugin", "handles_phi", "audit_required", "encryption_required"],
    "security": {},
    "compliance": {
        "data_classifications": ["CLASSIFICATION_PHI"],
        "hipaa_controls": ["164.312(a)", "164.312(a)(2)(iv)", "164.312(b)", "164.312(e)(1)"],
        "retention_days": 2555,
    },
}


def build(base: dict[str, Any], **changes: Any) -> PluginManifest:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return load_manifest_bytes(json.dumps(data).encode())


def refused(manifest: PluginManifest, **kwargs: Any) -> str:
    with pytest.raises(InvalidArgument) as info:
        validate_manifest(manifest, CATALOGUE, **kwargs)
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.reason, err.domain) == ("MANIFEST_INVALID", "vivified.registry")
    return err.message


def test_valid_manifests_pass() -> None:
    validate_manifest(build(BASE), CATALOGUE)
    validate_manifest(build(PHI), CATALOGUE)


@pytest.mark.parametrize(
    "plugin_id",
    [
        "../core",
        "core/../x",
        "",
        "a" * 300,
        "a" * 64,
        "email\x00gateway",
        "email-gateway\x00",
        "email\u202egateway",
        "\u202eyawetag-liame",
        "\u0435mail-gateway",  # Cyrillic e
        "em\u0430il-gateway",  # Cyrillic a
        "emaıl-gateway",  # dotless i
        "ｅmail-gateway",  # fullwidth e
        "Email-Gateway",
        "-email",
        "email-",
        "e--mail",
        "1email",
        "a",
        "email gateway",
        "email_gateway",
        "email.gateway",
        "email-gateway\n",
        " email-gateway",
        *sorted(RESERVED_IDS),
    ],
)
def test_i2_plugin_id_abuse_refused(plugin_id: str) -> None:
    message = refused(build(BASE, id=plugin_id))
    assert message.startswith("id:")


def test_i2_id_boundaries_accepted() -> None:
    for plugin_id in ("ab", "a" * 63, "a1", "core-plugin", "my-admin-tool"):
        validate_manifest(build(BASE, id=plugin_id), CATALOGUE)


def test_i2_id_abuse_through_yaml_is_reported_escaped() -> None:
    yaml_text = json.dumps({**BASE, "id": "x"}).replace('"x"', '"\\u202ecore"')
    message = refused(load_manifest_bytes(b"# yaml\n" + yaml_text.encode()))
    assert "\\u202e" in message and "\u202e" not in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name: required"),
        ({"name": "   "}, "name: required"),
        ({"name": "x" * 129}, "name:"),
        ({"name": "Email\x1bGateway"}, "name:"),
        ({"name": "Email\u202eGateway"}, "name:"),
        ({"name": "Email\nGateway"}, "name:"),
        ({"version": ""}, "version: required"),
        ({"description": "x" * 2049}, "description:"),
        ({"description": "red\x1b[31m"}, "description:"),
        ({"description": "a\u202eb"}, "description:"),
    ],
)
def test_text_fields_refused(changes: dict[str, Any], field: str) -> None:
    assert refused(build(BASE, **changes)).startswith(field)


def test_text_field_boundaries_accepted() -> None:
    validate_manifest(build(BASE, name="N" * 128, description="d\t" * 1024), CATALOGUE)


@pytest.mark.parametrize(
    "version",
    [
        "1.0",
        "v1.0.0",
        "01.0.0",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-01",
        "1.0.0\n",
        "\u0661.0.0",
        "1.0.0 ",
        "1.0.0-a..b",
        "1." * 100 + "0",
    ],
)
def test_non_semver_versions_refused(version: str) -> None:
    assert refused(build(BASE, version=version)).startswith("version:")


@pytest.mark.parametrize("version", ["0.0.1", "1.2.3-rc.1", "1.2.3-0.alpha-2+build.5", "10.20.30+sha.abc"])
def test_semver_versions_accepted(version: str) -> None:
    validate_manifest(build(BASE, version=version), CATALOGUE)


@pytest.mark.parametrize(
    ("contracts", "fragment"),
    [
        (["vivified.storage.v1.StoragePluginService"] * 2, "listed twice"),
        (["vivified.billing.v1.BillingPluginService"], "not a known contract"),
        (["vivified.communication.v1.CommunicationPlugin"], "not a service name"),
        (["CommunicationPluginService"], "not a service name"),
        (["vivified.communication.v1.CommunicationPluginService "], "not a service name"),
    ],
)
def test_contracts_refused(contracts: list[str], fragment: str) -> None:
    message = refused(build(BASE, contracts=contracts))
    assert message.startswith("contracts:") and fragment in message


def test_a_caller_only_manifest_lists_no_contracts_and_provides_nothing() -> None:
    validate_manifest(build(BASE, contracts=[]), CATALOGUE)
    message = refused(
        build(BASE, contracts=[], provides=["vivified.communication.v1.CommunicationPluginService/SendMessage"])
    )
    assert message.startswith("contracts:") and "provides must list the contracts" in message


def test_known_contracts_parameter() -> None:
    extra = "vivified.billing.v1.BillingPluginService"
    manifest = build(BASE, contracts=[extra])
    validate_manifest(manifest, CATALOGUE, known_contracts=DEFAULT_CONTRACTS | {extra})
    assert "not a known contract" in refused(build(BASE), known_contracts=frozenset({extra}))


@pytest.mark.parametrize("trait", ["admin", "root", "system", "plugin_manager", "operator", "user_manager"])
def test_dangerous_traits_refused_in_manifest(trait: str) -> None:
    message = refused(build(BASE, traits=[*BASE["traits"], trait]))
    assert repr(trait) in message and "cannot be granted to a plugin" in message


@pytest.mark.parametrize(
    ("traits", "fragment"),
    [
        ([*BASE["traits"], "audit_required"], "listed twice"),
        ([*BASE["traits"], "phi_handler"], "unknown trait"),
        ([*BASE["traits"], "network_isolated"], "conflict"),
        (["communication_plugin", "external_service", "handles_pii"], "requires 'audit_required'"),
    ],
)
def test_trait_rules_enforced(traits: list[str], fragment: str) -> None:
    assert fragment in refused(build(BASE, traits=traits))


PhiCase = Callable[[], PluginManifest]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: build(PHI, compliance__data_classifications=[]), "handles_phi is declared without CLASSIFICATION_PHI"),
        (lambda: build(PHI, compliance__hipaa_controls=[]), "hipaa_controls: required"),
        (lambda: build(PHI, compliance__retention_days=2554), "at least 2555"),
        (lambda: build(PHI, compliance__retention_days=0), "at least 2555"),
        (lambda: build(PHI, compliance__hipaa_controls=["164.312(f)"]), "164.312"),
        (lambda: build(PHI, compliance__hipaa_controls=["164.312"]), "164.312"),
        (lambda: build(PHI, compliance__hipaa_controls=["164.312(a)(12)"]), "164.312"),
        (lambda: build(PHI, compliance__hipaa_controls=["164.312(a)(1)(x)"]), "164.312"),
        (lambda: build(PHI, compliance__hipaa_controls=["164.312(a)", "164.312(a)"]), "listed twice"),
        (lambda: build(PHI, traits=["storage_plugin", "handles_phi", "audit_required"]), "encryption_required"),
        (
            lambda: build(PHI, traits=["storage_plugin", "audit_required", "encryption_required"]),
            "CLASSIFICATION_PHI is declared without handles_phi",
        ),
        (
            lambda: build(BASE, compliance__data_classifications=[]),
            "handles_pii is declared without CLASSIFICATION_PII",
        ),
        (
            lambda: build(BASE, traits=["communication_plugin", "external_service", "audit_required"]),
            "CLASSIFICATION_PII is declared without handles_pii",
        ),
        (
            lambda: build(BASE, compliance__data_classifications=["CLASSIFICATION_PII", "CLASSIFICATION_UNSPECIFIED"]),
            "data_classifications",
        ),
        (
            lambda: build(BASE, compliance__data_classifications=["CLASSIFICATION_PII", "CLASSIFICATION_PII"]),
            "listed twice",
        ),
        (
            lambda: build(BASE, compliance__data_classifications=["CLASSIFICATION_PII", "CLASSIFICATION_CONFIDENTIAL"]),
            "handles_confidential",
        ),
        (lambda: build(BASE, compliance__retention_days=-1), "negative"),
    ],
)
def test_phi_and_pii_rules(make: PhiCase, fragment: str) -> None:
    assert fragment in refused(make())


def test_unknown_enum_number_from_the_wire_refused() -> None:
    manifest = build(BASE)
    wire = ComplianceDeclaration()
    wire.MergeFromString(b"\x08\x63")  # data_classifications = 99, an open-enum value
    manifest.compliance.MergeFrom(wire)
    assert "99" in refused(manifest)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"security__allowed_domains": []}, "required for a plugin with external_service"),
        ({"security": {}}, "required for a plugin with external_service"),
        ({"traits": ["communication_plugin", "handles_pii", "audit_required"]}, "only a plugin with external_service"),
        ({"security__allowed_domains": ["API.example.com", "api.example.com."]}, "listed twice"),
        ({"security__allowed_domains": ["smtp.example.com", "localhost"]}, "'localhost' refused"),
    ],
)
def test_egress_declarations(changes: dict[str, Any], fragment: str) -> None:
    message = refused(build(BASE, **changes))
    assert message.startswith("security.allowed_domains:") and fragment in message


def test_unknown_wire_fields_refused_by_validation() -> None:
    top = PluginManifest.FromString(build(BASE).SerializeToString() + b"\x48\x01")
    assert "manifest field 9" in refused(top)
    nested = build(BASE)
    nested.compliance.MergeFromString(b"\x20\x01")
    assert "compliance field 4" in refused(nested)
