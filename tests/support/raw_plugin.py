"""A raw plugin that answers the core's Init: registered by hand (as in
`support.clients`), then serving `PluginLifecycleService` and health with its
issued certificate, requiring the core's client certificate."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from support.clients import PluginIdentity, approve, manifest_message, register
from support.processes import CoreProcess
from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc


class ReadyLifecycle(lifecycle_pb2_grpc.PluginLifecycleServiceServicer):
    """Init answers ready; counts the calls and keeps Shutdown's reasons."""

    def __init__(self) -> None:
        self.inits = 0
        self.shutdowns: list[str] = []

    async def Init(self, request: lifecycle_pb2.InitRequest, context: Any) -> lifecycle_pb2.InitResponse:
        self.inits += 1
        return lifecycle_pb2.InitResponse(ready=True)

    async def Shutdown(self, request: lifecycle_pb2.ShutdownRequest, context: Any) -> lifecycle_pb2.ShutdownResponse:
        self.shutdowns.append(request.reason)
        return lifecycle_pb2.ShutdownResponse()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def initialised_plugin(
    registrar: CoreProcess, plugin_id: str, *, unserved: frozenset[str] = frozenset(), **overrides: Any
) -> AsyncIterator[tuple[PluginIdentity, ReadyLifecycle]]:
    """Approve and register `plugin_id` through `registrar` at a loopback port,
    then serve Init (ready) and health there until the block ends: SERVING for
    "" and for each contract of the manifest but those in `unserved`, which
    health does not know (as a server that does not serve them answers)."""
    manifest = manifest_message(plugin_id, **overrides)
    approval = await approve(registrar, manifest, replace=True)
    endpoint = f"127.0.0.1:{_free_port()}"
    identity = await register(registrar, manifest, approval.join_token, endpoint=endpoint)
    lifecycle = ReadyLifecycle()
    server = grpc.aio.server()
    lifecycle_pb2_grpc.add_PluginLifecycleServiceServicer_to_server(lifecycle, server)
    checker = health.aio.HealthServicer()
    for name in ("", *(c for c in manifest.contracts if c not in unserved)):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_secure_port(
        endpoint,
        grpc.ssl_server_credentials(
            [(identity.key_pem, identity.chain_pem)], registrar.ca_pem, require_client_auth=True
        ),
    )
    await server.start()
    try:
        yield identity, lifecycle
    finally:
        await server.stop(0)
