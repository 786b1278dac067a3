"""The default roles satisfy the trait catalogue they ship with, and MFA is
mandatory for roles carrying admin or PHI traits (an earlier system's default
roles failed its own catalogue's rules)."""

from __future__ import annotations

import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.traits import InvalidCatalogue, RoleCatalogue, TraitCatalogue

TRAITS = TraitCatalogue.load_default()
ROLES = RoleCatalogue.load_default(TRAITS)


def test_default_roles_exist() -> None:
    assert ROLES.names == {"admin", "operator", "viewer", "developer", "phi_handler", "pii_handler", "break_glass"}


@pytest.mark.parametrize("name", sorted(ROLES.names))
def test_every_default_role_satisfies_the_catalogue(name: str) -> None:
    role = ROLES.get(name)
    assert role is not None
    TRAITS.check_set(role.traits, "user")  # requires present, no conflicts, user-grantable
    for trait in role.traits:
        held = TRAITS.get(trait)
        assert held is not None and held.requires <= role.traits


def test_capabilities_sit_where_people_expect() -> None:
    assert {"user_manager", "plugin_manager", "config_manager", "audit_viewer"} <= ROLES.traits_of(["admin"])
    assert "user_manager" not in ROLES.traits_of(["operator", "viewer", "developer", "phi_handler"])
    assert ROLES.traits_of(["phi_handler"]) >= {"handles_phi", "audit_required"}


def test_mfa_required_for_admin_phi_and_break_glass_roles_only() -> None:
    assert ROLES.mfa_required(["admin"]) and ROLES.mfa_required(["phi_handler"])
    assert ROLES.mfa_required(["break_glass"])  # C8: emergency access needs the second factor
    assert not any(ROLES.mfa_required([r]) for r in ("viewer", "developer", "operator", "pii_handler"))


def test_role_assignment_checks() -> None:
    assert ROLES.check_roles(["viewer", "admin", "viewer"], TRAITS) == ("admin", "viewer")
    with pytest.raises(InvalidArgument) as unknown:
        ROLES.check_roles(["superuser"], TRAITS)
    assert unknown.value.reason == "ROLE_UNKNOWN"
    with pytest.raises(InvalidArgument) as empty:
        ROLES.check_roles([], TRAITS)
    assert empty.value.reason == "INVALID_REQUEST"


def _roles(traits: list[str], name: str = "broken") -> dict[str, object]:
    return {
        "version": 1,
        "mfa_required_traits": ["admin"],
        "roles": [{"name": name, "description": "d", "traits": traits}],
    }


@pytest.mark.parametrize(
    "traits",
    [
        ["user_manager"],  # requires admin
        ["handles_phi"],  # requires audit_required
        ["handles_phi", "audit_required", "handles_public"],  # conflict
        ["external_service"],  # plugin-only trait
        ["root"],  # reserved
        ["no_such_trait"],
    ],
)
def test_a_role_that_breaks_the_catalogue_is_refused(traits: list[str]) -> None:
    with pytest.raises(InvalidCatalogue):
        RoleCatalogue.from_mapping(_roles(traits), TRAITS)


def test_duplicate_role_names_are_refused() -> None:
    data = _roles(["viewer"], "viewer")
    data["roles"] = data["roles"] * 2  # type: ignore[operator]
    with pytest.raises(InvalidCatalogue):
        RoleCatalogue.from_mapping(data, TRAITS)
