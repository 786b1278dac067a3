"""The trait catalogue: what each trait means, needs, excludes and who may hold it.

The catalogue is data (`catalogue.json`, shipped with the package) and is
checked when it is loaded, so a mistake in it stops the core at start-up
instead of silently weakening policy. The earlier system let alias entries
overwrite real traits and had requirements its own default roles could not
meet; both are refused here (duplicate names, unsatisfiable requirements).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from vivified.core.errors import InvalidArgument

Grantee = Literal["plugin", "user"]

CATEGORIES = frozenset({"role", "capability", "data_access", "security", "compliance", "plugin_type"})
GRANTEES: frozenset[str] = frozenset({"plugin", "user"})
_TRAIT_KEYS = frozenset({"name", "category", "description", "requires", "conflicts", "grantable_to"})
_TOP_KEYS = frozenset({"version", "traits"})


class InvalidCatalogue(ValueError):
    """The catalogue data itself is malformed or contradicts itself."""


@dataclass(frozen=True)
class Trait:
    """One catalogue entry. `requires` are all-of; `conflicts` are symmetric."""

    name: str
    category: str
    description: str
    requires: frozenset[str]
    conflicts: frozenset[str]
    grantable_to: frozenset[str]


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidCatalogue(f"{where}: expected a list of strings")
    if len(set(value)) != len(value):
        raise InvalidCatalogue(f"{where}: contains a duplicate")
    return list(value)


def _parse_trait(raw: Any, index: int) -> Trait:
    if not isinstance(raw, Mapping):
        raise InvalidCatalogue(f"traits[{index}]: expected an object")
    if set(raw) != _TRAIT_KEYS:
        raise InvalidCatalogue(f"traits[{index}]: keys must be exactly {sorted(_TRAIT_KEYS)}")
    name = raw["name"]
    if not isinstance(name, str) or not name.isascii() or not name.isidentifier() or not name.islower():
        raise InvalidCatalogue(f"traits[{index}]: name must be a lower-case identifier")
    if raw["category"] not in CATEGORIES:
        raise InvalidCatalogue(f"trait {name!r}: unknown category {raw['category']!r}")
    if not isinstance(raw["description"], str) or not raw["description"].strip():
        raise InvalidCatalogue(f"trait {name!r}: description is required")
    grantable = _str_list(raw["grantable_to"], f"trait {name!r}.grantable_to")
    if not set(grantable) <= GRANTEES:
        raise InvalidCatalogue(f"trait {name!r}: grantable_to must be among {sorted(GRANTEES)}")
    return Trait(
        name=name,
        category=raw["category"],
        description=raw["description"],
        requires=frozenset(_str_list(raw["requires"], f"trait {name!r}.requires")),
        conflicts=frozenset(_str_list(raw["conflicts"], f"trait {name!r}.conflicts")),
        grantable_to=frozenset(grantable),
    )


def _check_references(traits: Mapping[str, Trait]) -> None:
    for t in traits.values():
        for rule, names in (("requires", t.requires), ("conflicts", t.conflicts)):
            for other in sorted(names):
                if other == t.name:
                    raise InvalidCatalogue(f"trait {t.name!r} {rule} itself")
                if other not in traits:
                    raise InvalidCatalogue(f"trait {t.name!r} {rule} unknown trait {other!r}")
        for other in sorted(t.conflicts):
            if t.name not in traits[other].conflicts:
                raise InvalidCatalogue(f"conflict {t.name!r}/{other!r} must be declared on both traits")
        for other in sorted(t.requires):
            # A requirement the same grantee could never hold makes the trait unusable.
            missing = t.grantable_to - traits[other].grantable_to
            if missing:
                raise InvalidCatalogue(
                    f"trait {t.name!r} grantable to {sorted(missing)} requires {other!r}, which is not"
                )


def _closure(name: str, traits: Mapping[str, Trait]) -> frozenset[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        for req in traits[stack.pop()].requires:
            if req == name:
                raise InvalidCatalogue(f"trait {name!r} requires itself through a cycle")
            if req not in seen:
                seen.add(req)
                stack.append(req)
    return frozenset(seen)


def _check_satisfiable(traits: Mapping[str, Trait]) -> None:
    for name in sorted(traits):
        needed = _closure(name, traits) | {name}
        for member in sorted(needed):
            clash = traits[member].conflicts & needed
            if clash:
                raise InvalidCatalogue(
                    f"trait {name!r} can never be held: it needs {member!r} and {min(clash)!r}, which conflict"
                )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidCatalogue(f"duplicate key {key!r}")
        out[key] = value
    return out


class TraitCatalogue:
    """A validated, immutable set of traits."""

    def __init__(self, traits: Mapping[str, Trait]) -> None:
        # Private: use from_mapping or load_default, which validate.
        self._traits = dict(traits)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TraitCatalogue:
        """Build and validate a catalogue from its JSON form; raise InvalidCatalogue."""
        if not isinstance(data, Mapping) or not set(data) <= _TOP_KEYS or "traits" not in data:
            raise InvalidCatalogue(f"catalogue must be an object with keys {sorted(_TOP_KEYS)}")
        if data.get("version", 1) != 1:
            raise InvalidCatalogue(f"unsupported catalogue version {data.get('version')!r}")
        if not isinstance(data["traits"], list):
            raise InvalidCatalogue("traits: expected a list")
        traits: dict[str, Trait] = {}
        for index, raw in enumerate(data["traits"]):
            trait = _parse_trait(raw, index)
            if trait.name in traits:
                # The earlier catalogue let an alias silently replace a real trait.
                raise InvalidCatalogue(f"trait {trait.name!r} is defined twice")
            traits[trait.name] = trait
        _check_references(traits)
        _check_satisfiable(traits)
        return cls(traits)

    @classmethod
    def load_default(cls) -> TraitCatalogue:
        """Load the catalogue shipped with the package."""
        text = resources.files("vivified.core.traits").joinpath("catalogue.json").read_text("utf-8")
        return cls.from_mapping(json.loads(text, object_pairs_hook=_reject_duplicate_keys))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._traits)

    def get(self, name: str) -> Trait | None:
        return self._traits.get(name)

    def check_plugin_traits(self, traits: Iterable[str]) -> None:
        """Refuse a plugin manifest's traits with InvalidArgument(MANIFEST_INVALID)."""
        self.check_set(traits, "plugin")

    def check_set(self, traits: Iterable[str], grantee: Grantee) -> None:
        """Check that `grantee` may hold exactly this set of traits.

        Every problem is reported in one message. Plugin sets come from a
        manifest (reason MANIFEST_INVALID); user sets from roles (INVALID_REQUEST).
        """
        if grantee not in GRANTEES:
            raise ValueError(f"grantee must be one of {sorted(GRANTEES)}")
        held = set(traits)
        problems: list[str] = []
        known: set[str] = set()
        for name in sorted(held, key=repr):
            trait = self._traits.get(name) if isinstance(name, str) else None
            if trait is None:
                problems.append(f"unknown trait {ascii(name)[:80]}")
                continue
            known.add(name)
            if grantee not in trait.grantable_to:
                why = "reserved, granted to nobody" if not trait.grantable_to else f"{trait.category} trait"
                problems.append(f"trait {name!r} cannot be granted to a {grantee} ({why})")
            for req in sorted(trait.requires - held):
                problems.append(f"trait {name!r} requires {req!r}, which is missing")
        for name in sorted(known):
            for other in sorted(self._traits[name].conflicts & known):
                if name < other:
                    problems.append(f"traits {name!r} and {other!r} conflict")
        if problems:
            if grantee == "plugin":
                reason, domain = "MANIFEST_INVALID", "vivified.registry"
            else:
                reason, domain = "INVALID_REQUEST", "vivified.identity"
            raise InvalidArgument(f"traits: {'; '.join(problems)}", reason=reason, domain=domain)
