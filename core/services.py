"""Every service the core serves, in one list.

`Services` holds the servicers the core built; `bindings()` pairs each with
its generated registration function and full name (for reflection). Adding
a service to the core means one field and one entry here."""

from __future__ import annotations

from dataclasses import dataclass

from grpc_health.v1 import health, health_pb2_grpc
from vivified.admin.v1 import (
    access_catalogue_pb2_grpc,
    audit_query_pb2_grpc,
    event_admin_pb2_grpc,
    plugin_admin_pb2_grpc,
)
from vivified.config.v1 import config_pb2_grpc
from vivified.core.audit import AuditQueryService
from vivified.core.egress import EgressService
from vivified.core.events import EventBus
from vivified.core.gateway import GatewayService
from vivified.core.identity import Identity
from vivified.core.plugin_config import ConfigService
from vivified.core.registry._admin_service import AdminService
from vivified.core.registry._registry_service import RegistryService
from vivified.core.server import Binding
from vivified.core.storage import ObjectStoreService
from vivified.core.traits import AccessCatalogueService
from vivified.egress.v1 import egress_pb2_grpc
from vivified.events.v1 import events_pb2_grpc
from vivified.gateway.v1 import gateway_pb2_grpc
from vivified.identity.v1 import api_keys_pb2_grpc, auth_pb2_grpc, user_admin_pb2_grpc
from vivified.registry.v1 import registry_pb2_grpc
from vivified.storage.v1 import object_store_pb2_grpc


@dataclass(frozen=True)
class Services:
    """The servicers of one core. Which caller may reach which method is the
    policy's business (rules.json), not this list's: users reach the identity,
    config, audit-query and catalogue services on the bootstrap port with a
    bearer token or API key, plugins and operators the rest over mTLS."""

    registry: RegistryService
    plugin_admin: AdminService
    health: health.aio.HealthServicer
    gateway: GatewayService
    egress: EgressService
    storage: ObjectStoreService
    events: EventBus
    identity: Identity
    config: ConfigService
    audit_query: AuditQueryService
    access: AccessCatalogueService

    def bindings(self) -> list[Binding]:
        return [
            Binding(self.registry, registry_pb2_grpc.add_PluginRegistryServiceServicer_to_server,
                    "vivified.registry.v1.PluginRegistryService"),
            Binding(self.plugin_admin, plugin_admin_pb2_grpc.add_PluginAdminServiceServicer_to_server,
                    "vivified.admin.v1.PluginAdminService"),
            Binding(self.health, health_pb2_grpc.add_HealthServicer_to_server, "grpc.health.v1.Health"),
            Binding(self.gateway, gateway_pb2_grpc.add_OperatorGatewayServiceServicer_to_server,
                    "vivified.gateway.v1.OperatorGatewayService"),
            Binding(self.egress, egress_pb2_grpc.add_EgressProxyServiceServicer_to_server,
                    "vivified.egress.v1.EgressProxyService"),
            Binding(self.storage, object_store_pb2_grpc.add_ObjectStoreServiceServicer_to_server,
                    "vivified.storage.v1.ObjectStoreService"),
            Binding(self.events.service, events_pb2_grpc.add_EventBusServiceServicer_to_server,
                    "vivified.events.v1.EventBusService"),
            Binding(self.events.admin, event_admin_pb2_grpc.add_EventAdminServiceServicer_to_server,
                    "vivified.admin.v1.EventAdminService"),
            Binding(self.identity.auth, auth_pb2_grpc.add_AuthServiceServicer_to_server,
                    "vivified.identity.v1.AuthService"),
            Binding(self.identity.users, user_admin_pb2_grpc.add_UserAdminServiceServicer_to_server,
                    "vivified.identity.v1.UserAdminService"),
            Binding(self.identity.api_keys, api_keys_pb2_grpc.add_ApiKeyServiceServicer_to_server,
                    "vivified.identity.v1.ApiKeyService"),
            Binding(self.config, config_pb2_grpc.add_ConfigServiceServicer_to_server,
                    "vivified.config.v1.ConfigService"),
            Binding(self.audit_query, audit_query_pb2_grpc.add_AuditQueryServiceServicer_to_server,
                    "vivified.admin.v1.AuditQueryService"),
            Binding(self.access, access_catalogue_pb2_grpc.add_AccessCatalogueServiceServicer_to_server,
                    "vivified.admin.v1.AccessCatalogueService"),
        ]
