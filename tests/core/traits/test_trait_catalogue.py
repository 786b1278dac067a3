"""The trait catalogue: its shipped data, its self-checks and its grant rules."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import grpc
import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.traits import CATEGORIES, InvalidCatalogue, TraitCatalogue

ROLE_AND_CAPABILITY = (
    "admin",
    "operator",
    "viewer",
    "developer",
    "config_manager",
    "plugin_manager",
    "user_manager",
    "audit_viewer",
    "system_monitor",
)


def _raw_default() -> dict[str, Any]:
    text = resources.files("vivified.core.traits").joinpath("catalogue.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _entry(
    name: str,
    requires: list[str] | None = None,
    conflicts: list[str] | None = None,
    grantable_to: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "category": "security",
        "description": f"{name} trait",
        "requires": requires or [],
        "conflicts": conflicts or [],
        "grantable_to": ["plugin"] if grantable_to is None else grantable_to,
    }


@pytest.fixture(scope="module")
def catalogue() -> TraitCatalogue:
    return TraitCatalogue.load_default()


def test_default_catalogue_references_only_existing_traits(catalogue: TraitCatalogue) -> None:
    raw = _raw_default()["traits"]
    names = [t["name"] for t in raw]
    assert len(names) == len(set(names)) == len(catalogue.names)
    for entry in raw:
        assert entry["category"] in CATEGORIES
        for other in entry["requires"] + entry["conflicts"]:
            assert other in catalogue.names, (entry["name"], other)
            assert other != entry["name"]


def test_default_catalogue_has_no_alias_entries(catalogue: TraitCatalogue) -> None:
    # The earlier aliases replaced handles_phi/handles_pii and dropped their requirements.
    assert not {"phi_handler", "pii_processor"} & catalogue.names
    assert catalogue.get("handles_phi") is not None
    assert catalogue.get("handles_phi").requires == {"audit_required"}  # type: ignore[union-attr]
    assert catalogue.get("handles_pii").requires == {"audit_required"}  # type: ignore[union-attr]


def test_audit_viewer_requires_no_single_role(catalogue: TraitCatalogue) -> None:
    assert catalogue.get("audit_viewer").requires == frozenset()  # type: ignore[union-attr]


def test_network_isolated_conflicts_with_external_service(catalogue: TraitCatalogue) -> None:
    assert "external_service" in catalogue.get("network_isolated").conflicts  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_plugin_traits(["network_isolated", "external_service"])
    assert info.value.reason == "MANIFEST_INVALID"
    assert "conflict" in info.value.message
    assert "network_isolated" in info.value.message


@pytest.mark.parametrize("name", ROLE_AND_CAPABILITY + ("system", "root"))
def test_role_capability_and_reserved_traits_not_grantable_to_plugins(catalogue: TraitCatalogue, name: str) -> None:
    assert "plugin" not in catalogue.get(name).grantable_to  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["admin", "root", "system", "plugin_manager"])
def test_dangerous_traits_refused_for_plugins(catalogue: TraitCatalogue, name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_plugin_traits([name])
    err = info.value
    assert (err.code, err.reason, err.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MANIFEST_INVALID",
        "vivified.registry",
    )
    assert repr(name) in err.message and "cannot be granted to a plugin" in err.message


def test_unknown_trait_refused_and_named(catalogue: TraitCatalogue) -> None:
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_plugin_traits(["audit_required", "phi_handler"])
    assert info.value.reason == "MANIFEST_INVALID"
    assert "unknown trait 'phi_handler'" in info.value.message


def test_missing_required_trait_refused(catalogue: TraitCatalogue) -> None:
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_plugin_traits(["hipaa_compliant", "handles_phi", "audit_required"])
    assert "'hipaa_compliant' requires 'encryption_required'" in info.value.message
    catalogue.check_plugin_traits(["hipaa_compliant", "handles_phi", "audit_required", "encryption_required"])


def test_all_problems_are_reported_together(catalogue: TraitCatalogue) -> None:
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_plugin_traits(["admin", "handles_pii", "nope"])
    message = info.value.message
    assert "'admin'" in message and "'handles_pii' requires 'audit_required'" in message
    assert "unknown trait 'nope'" in message


def test_earlier_default_roles_satisfy_catalogue_for_users(catalogue: TraitCatalogue) -> None:
    roles = {
        "admin": ["admin", "audit_viewer", "config_manager", "plugin_manager", "viewer"],
        "operator": ["plugin_manager", "audit_viewer", "viewer"],
        "viewer": ["viewer"],
        "phi_handler": ["handles_phi", "audit_required", "viewer"],
        "pii_handler": ["handles_pii", "audit_required", "viewer"],
    }
    for traits in roles.values():
        catalogue.check_set(traits, "user")


def test_user_sets_use_their_own_reason(catalogue: TraitCatalogue) -> None:
    with pytest.raises(InvalidArgument) as info:
        catalogue.check_set(["external_service"], "user")
    assert info.value.reason == "INVALID_REQUEST"
    assert "cannot be granted to a user" in info.value.message
    with pytest.raises(ValueError):
        catalogue.check_set(["viewer"], "robot")  # type: ignore[arg-type]


def test_get_unknown_returns_none(catalogue: TraitCatalogue) -> None:
    assert catalogue.get("nope") is None


def _catalogue_error(traits: list[Any], **top: Any) -> str:
    with pytest.raises(InvalidCatalogue) as info:
        TraitCatalogue.from_mapping({"version": 1, "traits": traits, **top})
    return str(info.value)


def test_catalogue_with_require_cycle_refused() -> None:
    message = _catalogue_error([_entry("a", ["b"]), _entry("b", ["c"]), _entry("c", ["a"])])
    assert "cycle" in message


def test_catalogue_with_unknown_require_or_conflict_refused() -> None:
    assert "unknown trait 'ghost'" in _catalogue_error([_entry("a", ["ghost"])])
    assert "unknown trait 'ghost'" in _catalogue_error([_entry("a", conflicts=["ghost"])])


def test_catalogue_self_reference_refused() -> None:
    assert "itself" in _catalogue_error([_entry("a", ["a"])])
    assert "itself" in _catalogue_error([_entry("a", conflicts=["a"])])


def test_catalogue_duplicate_name_refused() -> None:
    assert "defined twice" in _catalogue_error([_entry("a"), _entry("a", ["b"]), _entry("b")])


def test_catalogue_one_sided_conflict_refused() -> None:
    assert "both" in _catalogue_error([_entry("a", conflicts=["b"]), _entry("b")])


def test_catalogue_unsatisfiable_trait_refused() -> None:
    traits = [_entry("a", ["b", "c"]), _entry("b", conflicts=["c"]), _entry("c", conflicts=["b"])]
    assert "can never be held" in _catalogue_error(traits)


def test_catalogue_requirement_not_grantable_to_same_grantee_refused() -> None:
    traits = [_entry("a", ["b"], grantable_to=["plugin"]), _entry("b", grantable_to=["user"])]
    assert "requires 'b'" in _catalogue_error(traits)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(category="ui"),
        lambda e: e.update(grantable_to=["robot"]),
        lambda e: e.update(grantable_to=["plugin", "plugin"]),
        lambda e: e.update(requires="b"),
        lambda e: e.update(description=""),
        lambda e: e.update(name="Bad Name"),
        lambda e: e.update(extra=True),
        lambda e: e.pop("conflicts"),
    ],
)
def test_catalogue_malformed_entry_refused(mutate: Any) -> None:
    entry = _entry("a")
    mutate(entry)
    _catalogue_error([entry])


def test_catalogue_malformed_top_level_refused() -> None:
    _catalogue_error([_entry("a")], extra=1)
    _catalogue_error([_entry("a")], version=2)
    with pytest.raises(InvalidCatalogue):
        TraitCatalogue.from_mapping({"traits": {"a": _entry("a")}})


def test_default_data_passes_from_mapping_and_mutation_is_caught() -> None:
    raw = _raw_default()
    assert TraitCatalogue.from_mapping(raw).names == TraitCatalogue.load_default().names
    broken = copy.deepcopy(raw)
    broken["traits"].append(dict(broken["traits"][0], description="alias overwrite"))
    with pytest.raises(InvalidCatalogue):
        TraitCatalogue.from_mapping(broken)
