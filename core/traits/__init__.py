"""Trait catalogue: capability and data-handling labels, their rules and grantees.

>>> catalogue = TraitCatalogue.load_default()
>>> catalogue.check_plugin_traits(["handles_pii", "audit_required"])
"""

from vivified.core.traits._catalogue import (
    CATEGORIES,
    GRANTEES,
    Grantee,
    InvalidCatalogue,
    Trait,
    TraitCatalogue,
)
from vivified.core.traits._roles import Role, RoleCatalogue
from vivified.core.traits._service import AccessCatalogueService

__all__ = [
    "CATEGORIES",
    "GRANTEES",
    "AccessCatalogueService",
    "Grantee",
    "InvalidCatalogue",
    "Role",
    "RoleCatalogue",
    "Trait",
    "TraitCatalogue",
]
