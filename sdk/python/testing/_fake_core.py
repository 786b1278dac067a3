"""`FakeCore`: an in-process stand-in for the core's plugin registry.

It speaks the real protocol over real TLS on loopback: a bootstrap port
(server-authenticated) and an mTLS port (client certificate from the
`LocalCA` root required), `Register` signing the CSR's public key with the
plugin's names, then `Init` and a health check on the plugin's endpoint with
the core's own client certificate, exactly as the core does. It records every
call so a test can assert on them, and can be told to refuse heartbeats, renewals or
resumes with a given status and reason."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from cryptography import x509
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc
from vivified.sdk._identity import CLIENT_AUTH, svid_uri
from vivified.sdk._settings import PluginSettings
from vivified.sdk._status import abort
from vivified.sdk.testing._ca import Leaf, LocalCA

Refusal = tuple[grpc.StatusCode, str]
"""A status code and the ErrorInfo reason to refuse a call with."""


def _peer_pem(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    certs = list(context.auth_context().get("x509_pem_cert") or [])
    return certs[0] if len(certs) == 1 else None


class _Registry(registry_pb2_grpc.PluginRegistryServiceServicer):
    def __init__(self, core: FakeCore) -> None:
        self._core = core

    async def _caller(self, context: grpc.aio.ServicerContext[Any, Any], refusal: Refusal | None) -> str:
        pem = _peer_pem(context)
        peer = svid_uri(pem, CLIENT_AUTH) if pem else None
        if pem is None or peer is None:
            await abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "no client certificate",
                reason="IDENTITY_MISSING",
                domain="vivified.auth",
            )
        if refusal is not None:
            self._core.refused.append(refusal[1])
            await abort(
                context,
                refusal[0],
                f"refused by the fake core: {refusal[1]}",
                reason=refusal[1],
                domain="vivified.registry",
            )
        self._core.peer_serials.append(x509.load_pem_x509_certificate(pem).serial_number)
        return peer

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.RegisterResponse:
        core = self._core
        core.registrations.append(request)
        if request.join_token != core.join_token:
            await abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "join token unknown, used or expired",
                reason="JOIN_TOKEN_INVALID",
                domain="vivified.registry",
            )
        leaf = core.ca.sign_csr(request.csr_pem.encode(), request.manifest.id, lifetime=core.leaf_lifetime)
        core.issued.append(leaf)
        if core.call_init:
            core._schedule_init(request.manifest.id, request.endpoint)
        return registry_pb2.RegisterResponse(
            certificate_chain_pem=leaf.chain_pem.decode(),
            ca_certificate_pem=core.ca.root_pem.decode(),
            spiffe_id=f"spiffe://{core.ca.trust_domain}/plugin/{request.manifest.id}",
            expire_time=_timestamp(leaf.cert.not_valid_after_utc),
            heartbeat_interval_seconds=core.heartbeat_interval,
        )

    async def RenewCertificate(
        self, request: registry_pb2.RenewCertificateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.RenewCertificateResponse:
        peer = await self._caller(context, self._core.renew_refusal)
        self._core.renewals.append(peer)
        leaf = self._core.ca.sign_csr(
            request.csr_pem.encode(), peer.rsplit("/", 1)[1], lifetime=self._core.leaf_lifetime
        )
        self._core.issued.append(leaf)
        return registry_pb2.RenewCertificateResponse(
            certificate_chain_pem=leaf.chain_pem.decode(), expire_time=_timestamp(leaf.cert.not_valid_after_utc)
        )

    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.HeartbeatResponse:
        peer = await self._caller(context, self._core.heartbeat_refusal)
        self._core.heartbeats.append(peer)
        return registry_pb2.HeartbeatResponse(heartbeat_interval_seconds=self._core.heartbeat_interval)

    async def Resume(
        self, request: registry_pb2.ResumeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.ResumeResponse:
        """Accepts any certificate from the CA unless `resume_refusal` is set,
        then sends Init to the new endpoint, as the core does."""
        peer = await self._caller(context, self._core.resume_refusal)
        core = self._core
        core.resumes.append((peer, request.endpoint))
        if core.call_init:
            core._schedule_init(peer.rsplit("/", 1)[1], request.endpoint)
        return registry_pb2.ResumeResponse(heartbeat_interval_seconds=core.heartbeat_interval)

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.DeregisterResponse:
        peer = await self._caller(context, None)
        self._core.deregistrations.append((peer, request.reason))
        return registry_pb2.DeregisterResponse()


def _timestamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


class FakeCore:
    """Serve the registry on two loopback ports until `stop()` (or use `async with`).

    Example::

        ca = LocalCA()
        async with FakeCore(ca) as core:
            runtime = PluginRuntime([MyPlugin()], core.settings(tmp_path, manifest_path))
            await runtime.start()
            await asyncio.wait_for(core.initialised.wait(), 10)
            async with core.plugin_channel(runtime.endpoint, runtime.plugin_id) as channel:
                ...  # call the plugin's contract as the core would
            await runtime.stop()
    """

    def __init__(
        self,
        ca: LocalCA,
        *,
        server_identity: Leaf | None = None,
        join_token: str = "test-join-token",
        leaf_lifetime: dt.timedelta = dt.timedelta(hours=1),
        heartbeat_interval: int = 1,
        call_init: bool = True,
    ) -> None:
        self.ca = ca
        self.identity = ca.core_identity()
        """The core's client certificate, used to call plugins."""
        self.server_identity = server_identity or self.identity
        self.join_token = join_token
        self.leaf_lifetime = leaf_lifetime
        self.heartbeat_interval = heartbeat_interval
        self.call_init = call_init
        self.heartbeat_refusal: Refusal | None = None
        self.renew_refusal: Refusal | None = None
        self.resume_refusal: Refusal | None = None
        self.registrations: list[registry_pb2.RegisterRequest] = []
        self.issued: list[Leaf] = []
        self.heartbeats: list[str] = []
        self.renewals: list[str] = []
        self.deregistrations: list[tuple[str, str]] = []
        self.resumes: list[tuple[str, str]] = []
        """(SPIFFE id, endpoint) of every accepted Resume."""
        self.refused: list[str] = []
        """The reason of every call refused because of `heartbeat_refusal`, `renew_refusal` or `resume_refusal`."""
        self.peer_serials: list[int] = []
        """Serial of the client certificate of every accepted mTLS call, in order."""
        self.init_results: list[bool] = []
        self.initialised = asyncio.Event()
        """Set once Init and the health check after a registration have been tried."""
        self.bootstrap_address = ""
        self.core_address = ""
        self._server: grpc.aio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Self:
        server = grpc.aio.server()
        registry_pb2_grpc.add_PluginRegistryServiceServicer_to_server(_Registry(self), server)
        pair = [(self.server_identity.key_pem, self.server_identity.chain_pem)]
        bootstrap = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(pair))
        mtls = server.add_secure_port(
            "127.0.0.1:0",
            grpc.ssl_server_credentials(pair, root_certificates=self.ca.root_pem, require_client_auth=True),
        )
        await server.start()
        self._server = server
        self.bootstrap_address, self.core_address = f"127.0.0.1:{bootstrap}", f"127.0.0.1:{mtls}"
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def settings(self, directory: Path, manifest_path: Path, **changes: Any) -> PluginSettings:
        """Settings pointing a plugin at this core (writes the root to `directory/core-ca.pem`)."""
        ca_file = directory / "core-ca.pem"
        ca_file.write_bytes(self.ca.root_pem)
        settings = PluginSettings(
            manifest_path=manifest_path,
            join_token=self.join_token,
            ca_file=ca_file,
            core_address=self.core_address,
            bootstrap_address=self.bootstrap_address,
            trust_domain=self.ca.trust_domain,
        )
        return dataclasses.replace(settings, **changes)

    def plugin_channel(self, endpoint: str, plugin_id: str, identity: Leaf | None = None) -> grpc.aio.Channel:
        """A channel to a plugin's server presenting `identity` (default: the core's
        certificate) and verifying the plugin's name `<id>.plugin.<trust-domain>`."""
        identity = identity or self.identity
        credentials = grpc.ssl_channel_credentials(self.ca.root_pem, identity.key_pem or None, identity.chain_pem)
        options = [
            ("grpc.ssl_target_name_override", f"{plugin_id}.plugin.{self.ca.trust_domain}"),
            # Init is sent while the plugin is still starting its server; retry the
            # connection quickly instead of after gRPC's default one-second backoff.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
        ]
        return grpc.aio.secure_channel(endpoint, credentials, options=options)

    def _schedule_init(self, plugin_id: str, endpoint: str) -> None:
        task = asyncio.create_task(self._init(plugin_id, endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _init(self, plugin_id: str, endpoint: str) -> None:
        ok = False
        try:
            async with self.plugin_channel(endpoint, plugin_id) as channel:
                reply = await lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel).Init(
                    lifecycle_pb2.InitRequest(plugin_id=plugin_id), timeout=15, wait_for_ready=True
                )
                health: Any = health_pb2_grpc.HealthStub(channel)  # its stub lacks the generated methods
                checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                ok = reply.ready and checked.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            ok = False
        finally:
            self.init_results.append(ok)
            self.initialised.set()
