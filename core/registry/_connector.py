"""Core → plugin calls over mTLS with the core's own certificate.

The plugin's server certificate is verified against the core's root and the
host name `<id>.plugin.<trust-domain>`, so only that plugin can answer.

After Init, the core checks that the plugin serves every contract its
manifest lists, by asking its `grpc.health.v1` service for each one by name:
both SDKs register a health status for exactly the services they added to
the server, so a service the plugin does not serve answers NOT_FOUND
(`NotServed`). Health rather than reflection or a descriptor sent at
registration: it is the protocol the core already speaks to every plugin at
Init, needs nothing more in either SDK, and is answered by the running
server itself rather than by a list sent beside it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vivified.core.clock import Clock
from vivified.core.registry._store import PluginRecord
from vivified.lifecycle.v1 import lifecycle_pb2, lifecycle_pb2_grpc

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotServed:
    """Init answered, but the plugin does not serve `service`, a contract its manifest lists."""

    service: str


@dataclass(frozen=True)
class CoreIdentity:
    """The material the core presents when it calls a plugin."""

    root_pem: bytes
    chain_pem: bytes
    key_pem: bytes
    trust_domain: str


class PluginConnector:
    """One cached channel per plugin endpoint."""

    def __init__(self, identity: CoreIdentity, clock: Clock) -> None:
        self._identity = identity
        self._clock = clock
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.root_pem, private_key=identity.key_pem, certificate_chain=identity.chain_pem
        )

    def use_identity(self, identity: CoreIdentity) -> None:
        """Present `identity` (and trust its roots) on every call from now on:
        cached channels close once their calls finish and are re-dialled."""
        self._identity = identity
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.root_pem, private_key=identity.key_pem, certificate_chain=identity.chain_pem
        )
        channels, self._channels = self._channels, {}
        for _, channel in channels.values():
            asyncio.ensure_future(channel.close(grace=5.0))

    def channel(self, record: PluginRecord) -> grpc.aio.Channel:
        cached = self._channels.get(record.plugin_id)
        if cached is not None and cached[0] == record.endpoint:
            return cached[1]
        if cached is not None:
            asyncio.ensure_future(cached[1].close())
        channel = grpc.aio.secure_channel(
            record.endpoint,
            self._credentials,
            options=[
                ("grpc.ssl_target_name_override", f"{record.plugin_id}.plugin.{self._identity.trust_domain}"),
                # A new plugin's server is often still starting when Init is sent;
                # reconnect quickly instead of after gRPC's default 1 s backoff.
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
            ],
        )
        self._channels[record.plugin_id] = (record.endpoint, channel)
        return channel

    async def init(self, record: PluginRecord, timeout: float) -> bool | NotServed:
        """Call Init until it answers or `timeout` passes, then check health:
        overall, and of each contract the manifest lists (see the module docstring)."""
        channel = self.channel(record)
        lifecycle = lifecycle_pb2_grpc.PluginLifecycleServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = self._clock.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                reply = await lifecycle.Init(
                    lifecycle_pb2.InitRequest(plugin_id=record.plugin_id, granted_traits=sorted(record.granted_traits)),
                    timeout=max(0.5, min(5.0, deadline - self._clock.monotonic())),
                    wait_for_ready=True,
                )
                if not reply.ready:
                    _log.warning("plugin %s answered Init but is not ready", record.plugin_id)
                    return False
                # types-grpcio-health-checking declares HealthStub without its Check/Watch callables.
                checked: health_pb2.HealthCheckResponse = await health.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(), timeout=5.0
                )
                if checked.status != health_pb2.HealthCheckResponse.SERVING:
                    return False
                return await self._contracts_served(record, health)
            except grpc.aio.AioRpcError as exc:
                if self._clock.monotonic() + delay >= deadline:
                    _log.warning("plugin %s did not answer Init: %s", record.plugin_id, exc.code().name)
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    async def _contracts_served(record: PluginRecord, health: health_pb2_grpc.HealthStub) -> bool | NotServed:
        for service in record.manifest.contracts:
            try:
                checked: health_pb2.HealthCheckResponse = await health.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(service=service), timeout=5.0
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return NotServed(service)
                raise
            if checked.status != health_pb2.HealthCheckResponse.SERVING:
                _log.warning("plugin %s: contract %s is %s", record.plugin_id, service, checked.status)
                return False
        return True

    async def shutdown(self, record: PluginRecord, reason: str) -> None:
        """Ask a plugin to stop; best effort, bounded."""
        if not record.endpoint:
            return
        try:
            await lifecycle_pb2_grpc.PluginLifecycleServiceStub(self.channel(record)).Shutdown(
                lifecycle_pb2.ShutdownRequest(reason=reason), timeout=3.0
            )
        except grpc.aio.AioRpcError as exc:
            _log.info("plugin %s did not acknowledge Shutdown: %s", record.plugin_id, exc.code().name)

    async def forget(self, plugin_id: str) -> None:
        cached = self._channels.pop(plugin_id, None)
        if cached is not None:
            await cached[1].close()

    async def close(self) -> None:
        for plugin_id in list(self._channels):
            await self.forget(plugin_id)
