"""Roles: named sets of user traits, shipped as data next to the trait catalogue.

Each role's trait set must satisfy the catalogue by itself (requires present,
no conflicts, every trait grantable to a user) — the earlier system shipped
default roles its own catalogue rejected. A user's traits are the union of
their roles' traits; the union is checked too when roles are assigned, so two
roles whose traits conflict cannot be combined.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from vivified.core.errors import InvalidArgument, VivifiedError
from vivified.core.traits._catalogue import (
    InvalidCatalogue,
    TraitCatalogue,
    _reject_duplicate_keys,
)

_ROLE_KEYS = frozenset({"name", "description", "traits"})
_TOP_KEYS = frozenset({"version", "mfa_required_traits", "roles"})


@dataclass(frozen=True)
class Role:
    """One role: a name people are given and the traits it carries."""

    name: str
    description: str
    traits: frozenset[str]


class RoleCatalogue:
    """Validated roles, and the traits that make MFA mandatory."""

    def __init__(self, roles: Mapping[str, Role], mfa_required_traits: frozenset[str]) -> None:
        # Private: use from_mapping or load_default, which validate.
        self._roles = dict(roles)
        self.mfa_required_traits = mfa_required_traits

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], traits: TraitCatalogue) -> RoleCatalogue:
        """Build and validate roles against `traits`; raise InvalidCatalogue."""
        if not isinstance(data, Mapping) or set(data) != _TOP_KEYS or data["version"] != 1:
            raise InvalidCatalogue(f"roles must be an object with keys {sorted(_TOP_KEYS)} and version 1")
        mfa = data["mfa_required_traits"]
        if not isinstance(mfa, list) or not all(isinstance(t, str) and t in traits.names for t in mfa):
            raise InvalidCatalogue("mfa_required_traits must list catalogue traits")
        if not isinstance(data["roles"], list):
            raise InvalidCatalogue("roles: expected a list")
        roles: dict[str, Role] = {}
        for index, raw in enumerate(data["roles"]):
            if not isinstance(raw, Mapping) or set(raw) != _ROLE_KEYS:
                raise InvalidCatalogue(f"roles[{index}]: keys must be exactly {sorted(_ROLE_KEYS)}")
            name, held = raw["name"], raw["traits"]
            if not isinstance(name, str) or not name.isidentifier() or not name.islower():
                raise InvalidCatalogue(f"roles[{index}]: name must be a lower-case identifier")
            if name in roles:
                raise InvalidCatalogue(f"role {name!r} is defined twice")
            if not isinstance(held, list) or not held or not all(isinstance(t, str) for t in held):
                raise InvalidCatalogue(f"role {name!r}: traits must be a non-empty list of strings")
            try:
                traits.check_set(held, "user")
            except VivifiedError as exc:
                raise InvalidCatalogue(f"role {name!r} breaks the trait catalogue: {exc.message}") from None
            roles[name] = Role(name, str(raw["description"]), frozenset(held))
        return cls(roles, frozenset(mfa))

    @classmethod
    def load_default(cls, traits: TraitCatalogue) -> RoleCatalogue:
        """The roles shipped with the package (`roles.json`)."""
        text = resources.files("vivified.core.traits").joinpath("roles.json").read_text("utf-8")
        return cls.from_mapping(json.loads(text, object_pairs_hook=_reject_duplicate_keys), traits)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._roles)

    def get(self, name: str) -> Role | None:
        return self._roles.get(name)

    def traits_of(self, roles: Iterable[str]) -> frozenset[str]:
        """The union of the roles' traits; unknown role names grant nothing."""
        held: set[str] = set()
        for name in roles:
            role = self._roles.get(name)
            if role is not None:
                held |= role.traits
        return frozenset(held)

    def check_roles(self, roles: Iterable[str], traits: TraitCatalogue) -> tuple[str, ...]:
        """Validate a role assignment; return it sorted and de-duplicated.
        Raises InvalidArgument (ROLE_UNKNOWN, or INVALID_REQUEST for an empty
        list or roles whose combined traits break the catalogue)."""
        names = sorted(set(roles))
        if not names:
            raise InvalidArgument("at least one role is required", reason="INVALID_REQUEST", domain="vivified.identity")
        unknown = [n for n in names if n not in self._roles]
        if unknown:
            raise InvalidArgument(
                f"unknown role(s) {', '.join(ascii(n)[:66] for n in unknown[:5])}; known: {', '.join(sorted(self._roles))}",
                reason="ROLE_UNKNOWN",
                domain="vivified.identity",
            )
        traits.check_set(self.traits_of(names), "user")
        return tuple(names)

    def mfa_required(self, roles: Iterable[str]) -> bool:
        """True when the roles carry a trait for which MFA is mandatory."""
        return bool(self.traits_of(roles) & self.mfa_required_traits)
