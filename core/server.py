"""The core's gRPC server: one grpc.aio server, one interceptor chain, two TLS
listeners — the mTLS port (client certificate required: plugins, operators)
and the bootstrap port (server-authenticated TLS: plugins register there, and
people sign in there and call with `authorization: Bearer <access token>`).
Both ports serve every service; policy decides per principal kind."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vivified.admin.v1 import plugin_admin_pb2, plugin_admin_pb2_grpc
from vivified.core.chain import ChainInterceptor
from vivified.core.config import CoreConfig
from vivified.core.egress import EgressService
from vivified.core.gateway import ContractProxy, GatewayService
from vivified.core.identity import ApiKeyService, AuthService, UserAdminService
from vivified.identity.v1 import (
    api_keys_pb2,
    api_keys_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    user_admin_pb2,
    user_admin_pb2_grpc,
)
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.core.errors import FailedPrecondition
from vivified.core.registry._admin_service import AdminService
from vivified.core.registry._registry_service import RegistryService
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc

# TLS 1.2+ with AEAD suites only. gRPC's BoringSSL refuses TLS < 1.2 and its
# default suite list is AEAD-only; GRPC_SSL_CIPHER_SUITES, which gRPC reads once
# when it is imported, could widen that, so the core refuses to start when it
# names anything else.
AEAD_CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
)


def check_cipher_suites(value: str | None) -> None:
    """Refuse a GRPC_SSL_CIPHER_SUITES that names a non-AEAD suite."""
    if value is None:
        return
    weak = sorted(set(filter(None, value.split(":"))) - AEAD_CIPHER_SUITES)
    if weak:
        raise FailedPrecondition(
            f"GRPC_SSL_CIPHER_SUITES enables non-AEAD or unknown suites ({', '.join(weak)}); "
            f"unset it or list only: {', '.join(sorted(AEAD_CIPHER_SUITES))}",
            reason="TLS_CONFIG_INSECURE",
        )


def server_options(config: CoreConfig) -> Sequence[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", 256),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_connection_idle_ms", 15 * 60_000),
    ]


def build_server(
    *,
    config: CoreConfig,
    chain: ChainInterceptor,
    registry: RegistryService,
    admin: AdminService,
    health_servicer: health.aio.HealthServicer,
    gateway: GatewayService,
    contract_proxy: ContractProxy,
    egress: EgressService,
    auth: AuthService,
    users: UserAdminService,
    api_keys: ApiKeyService,
    root_pem: bytes,
    chain_pem: bytes,
    key_pem: bytes,
) -> tuple[grpc.aio.Server, int, int]:
    """Build the server and bind both ports; returns (server, mtls_port, bootstrap_port)."""
    server = grpc.aio.server(interceptors=[chain], options=list(server_options(config)))
    registry_pb2_grpc.add_PluginRegistryServiceServicer_to_server(registry, server)
    plugin_admin_pb2_grpc.add_PluginAdminServiceServicer_to_server(admin, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    gateway_pb2_grpc.add_OperatorGatewayServiceServicer_to_server(gateway, server)
    egress_pb2_grpc.add_EgressProxyServiceServicer_to_server(egress, server)
    # Users reach these on the bootstrap port (no client certificate) with a
    # bearer token or API key; operators reach UserAdminService on the mTLS port.
    auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
    user_admin_pb2_grpc.add_UserAdminServiceServicer_to_server(users, server)
    api_keys_pb2_grpc.add_ApiKeyServiceServicer_to_server(api_keys, server)
    server.add_generic_rpc_handlers([contract_proxy])
    if config.profile == "development":
        names = (
            registry_pb2.DESCRIPTOR.services_by_name["PluginRegistryService"].full_name,
            plugin_admin_pb2.DESCRIPTOR.services_by_name["PluginAdminService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            gateway_pb2.DESCRIPTOR.services_by_name["OperatorGatewayService"].full_name,
            egress_pb2.DESCRIPTOR.services_by_name["EgressProxyService"].full_name,
            auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            user_admin_pb2.DESCRIPTOR.services_by_name["UserAdminService"].full_name,
            api_keys_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
    mtls = grpc.ssl_server_credentials(
        [(key_pem, chain_pem)], root_certificates=root_pem, require_client_auth=True
    )
    bootstrap = grpc.ssl_server_credentials([(key_pem, chain_pem)], root_certificates=None, require_client_auth=False)
    mtls_port = server.add_secure_port(config.listen_address, mtls)
    bootstrap_port = server.add_secure_port(config.bootstrap_address, bootstrap)
    return server, mtls_port, bootstrap_port
