"""AccessCatalogueService: the trait catalogue and the roles, read-only, as the
core enforces them. Who may read is policy's decision; the chain audits it."""

from __future__ import annotations

from typing import Any

import grpc

from vivified.admin.v1 import access_catalogue_pb2 as pb
from vivified.admin.v1 import access_catalogue_pb2_grpc
from vivified.core.traits._catalogue import TraitCatalogue
from vivified.core.traits._roles import RoleCatalogue

Context = grpc.aio.ServicerContext[Any, Any]


class AccessCatalogueService(access_catalogue_pb2_grpc.AccessCatalogueServiceServicer):
    """Answers from the catalogues the core loaded at start (immutable)."""

    def __init__(self, traits: TraitCatalogue, roles: RoleCatalogue) -> None:
        listed = (traits.get(name) for name in sorted(traits.names))
        self._traits = pb.ListTraitsResponse(
            traits=[
                pb.TraitInfo(
                    name=t.name,
                    category=t.category,
                    description=t.description,
                    requires=sorted(t.requires),
                    conflicts=sorted(t.conflicts),
                    grantable_to=sorted(t.grantable_to),
                )
                for t in listed
                if t is not None
            ]
        )
        self._roles = pb.ListRolesResponse(
            roles=[
                pb.RoleInfo(
                    name=r.name,
                    description=r.description,
                    traits=sorted(r.traits),
                    mfa_required=roles.mfa_required([r.name]),
                )
                for r in (roles.get(name) for name in sorted(roles.names))
                if r is not None
            ]
        )

    async def ListTraits(self, request: pb.ListTraitsRequest, context: Context) -> pb.ListTraitsResponse:
        return self._traits

    async def ListRoles(self, request: pb.ListRolesRequest, context: Context) -> pb.ListRolesResponse:
        return self._roles
