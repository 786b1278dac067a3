"""The core's gRPC server: one grpc.aio server, one interceptor chain, two TLS
listeners — the mTLS port (client certificate required: plugins, operators)
and the bootstrap port (server-authenticated TLS: plugins register there, and
people sign in there and call with `authorization: Bearer <access token>` or
`x-api-key` metadata). Both ports serve every service; policy decides per
principal kind. With `plugin_socket_dir` set, both are also served as Unix
sockets for sandboxed plugins, with the same credentials."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from vivified.core.ca import CoreTLS
from vivified.core.chain import ChainInterceptor
from vivified.core.config import CoreConfig
from vivified.core.errors import FailedPrecondition
from vivified.core.plugin_sockets import bootstrap_socket, core_socket, prepare_socket_dir, unix_target

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
    """HTTP/2 and connection limits (docs/security.md J3, J4; what they do and do not
    cover is in docs/security.md): 256 streams per connection, pings without
    data refused more often than once a minute (GOAWAY too_many_pings after
    two strikes), idle connections closed after 15 minutes, unfinished
    handshakes after `handshake_timeout_seconds`, and at most
    `max_connections` connections."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", 256),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_connection_idle_ms", 15 * 60_000),
        ("grpc.server_handshake_timeout_ms", int(config.handshake_timeout_seconds * 1000)),
        ("grpc.max_allowed_incoming_connections", config.max_connections),
    ]


@dataclass(frozen=True)
class Binding:
    """One generated servicer, the generated function that adds it to a
    server, and its full service name (for reflection)."""

    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]
    name: str


class CoreServer:
    """The built server as a component: `start` binds both ports and serves
    (a port that cannot be bound stops the server again, so neither stays
    bound); `stop` finishes in-flight calls within `grace()` seconds."""

    def __init__(
        self,
        server: grpc.aio.Server,
        ports: Sequence[tuple[str, grpc.ServerCredentials]],
        grace: Callable[[], float],
    ) -> None:
        self.server = server
        self._ports = ports
        self._grace = grace
        self.bound: tuple[int, ...] = ()
        """The bound port of each address, in order, once started."""

    async def start(self) -> None:
        try:
            self.bound = tuple(
                self.server.add_secure_port(address, credentials) for address, credentials in self._ports
            )
        except BaseException:
            # grpc listens on a port as it is added, and an unstarted server
            # keeps it until it has been started and stopped.
            await self.server.start()
            await self.server.stop(None)
            raise
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(self._grace())


def build_server(
    *,
    config: CoreConfig,
    chain: ChainInterceptor,
    bindings: Sequence[Binding],
    contract_proxy: grpc.GenericRpcHandler,
    tls: CoreTLS,
    grace: Callable[[], float],
) -> CoreServer:
    """Build the server; `CoreServer.start` binds the mTLS and bootstrap
    ports (`bound` then starts with (mtls_port, bootstrap_port)), and their
    Unix sockets when `plugin_socket_dir` is set."""
    server = grpc.aio.server(interceptors=[chain], options=list(server_options(config)))
    for binding in bindings:
        binding.add(binding.servicer, server)
    server.add_generic_rpc_handlers([contract_proxy])
    if config.profile == "development":
        reflection.enable_server_reflection([b.name for b in bindings] + [reflection.SERVICE_NAME], server)
    # Both listeners reload their certificates at run time from `tls` (CA rotation).
    ports = [(config.listen_address, tls.mtls_credentials()), (config.bootstrap_address, tls.bootstrap_credentials())]
    if config.plugin_socket_dir is not None:
        # The same two listeners as Unix sockets, for sandboxed plugins (core/plugin_sockets.py).
        directory = config.plugin_socket_dir.resolve()
        prepare_socket_dir(directory)
        ports += [
            (unix_target(core_socket(directory)), tls.mtls_credentials()),
            (unix_target(bootstrap_socket(directory)), tls.bootstrap_credentials()),
        ]
    return CoreServer(server, ports, grace)
