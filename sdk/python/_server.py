"""The plugin's own gRPC server: its contract servicers, the lifecycle service
and `grpc.health.v1`, over mTLS, behind `CoreOnlyInterceptor`.

The endpoint must be sent in `Register` before the server can start (it needs
the certificate `Register` returns), so the port is reserved first: a socket
bound with `SO_REUSEPORT` (never listening, so it receives no connections)
holds the port until gRPC, which binds with `SO_REUSEPORT` too, has started."""

from __future__ import annotations

import importlib
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace

from vivified.lifecycle.v1 import lifecycle_pb2_grpc
from vivified.sdk._errors import ConfigurationError
from vivified.sdk._guard import CoreOnlyInterceptor
from vivified.sdk._metrics import PluginMetrics
from vivified.sdk._server_trace import TracingInterceptor
from vivified.sdk._transport import ServerCertificates


@dataclass(frozen=True)
class ServedContract:
    """A generated servicer base class found on a plugin object."""

    service_name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]


def contracts_of(servicer: object) -> list[ServedContract]:
    """Every generated servicer base of `servicer`, found by walking its MRO for a
    class defined in a `*_pb2_grpc` module that has a matching `add_<Name>_to_server`."""
    found = []
    for cls in type(servicer).__mro__:
        module_name = cls.__module__
        if not module_name.endswith("_pb2_grpc") or not cls.__name__.endswith("Servicer"):
            continue
        module = sys.modules[module_name]
        add = getattr(module, f"add_{cls.__name__}_to_server", None)
        service = cls.__name__.removesuffix("Servicer")
        descriptor = importlib.import_module(module_name.removesuffix("_grpc")).DESCRIPTOR
        if add is None or service not in descriptor.services_by_name:
            continue
        found.append(ServedContract(descriptor.services_by_name[service].full_name, add))
    if not found:
        raise ConfigurationError(
            f"{type(servicer).__name__} does not subclass a generated servicer (a class from a *_pb2_grpc module)"
        )
    return found


def reserve_port(host: str) -> socket.socket:
    """A bound, non-listening placeholder socket holding an OS-chosen port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    placeholder = socket.socket(family, socket.SOCK_STREAM)
    try:
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        placeholder.bind((host, 0))
    except OSError as exc:
        placeholder.close()
        raise ConfigurationError(f"cannot bind a port on {host}: {exc.strerror}") from None
    return placeholder


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PluginServer:
    """Serves the plugin's servicers; `health` reports NOT_SERVING until Init succeeds."""

    def __init__(
        self,
        servicers: Sequence[object],
        lifecycle: lifecycle_pb2_grpc.PluginLifecycleServiceServicer,
        trust_domain: str,
        tracer: trace.Tracer | None = None,
        metrics: PluginMetrics | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._metrics = metrics or PluginMetrics()
        self._contracts = [(servicer, contract) for servicer in servicers for contract in contracts_of(servicer)]
        self._lifecycle = lifecycle
        self._trust_domain = trust_domain
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None

    @property
    def service_names(self) -> list[str]:
        return [contract.service_name for _, contract in self._contracts]

    async def start(self, address: str, certificates: ServerCertificates, port: int | None = None) -> None:
        """Serve on `address` (`host:port`, with `port` the reserved port it must get, or
        `unix:<path>`, replacing a socket a previous run left)."""
        if address.startswith("unix:"):
            stale = Path(address.removeprefix("unix:"))
            if stale.is_socket():
                stale.unlink()
        server = grpc.aio.server(
            interceptors=self._interceptors(),
            options=[("grpc.so_reuseport", 1)],
        )
        for servicer, contract in self._contracts:
            contract.add_to_server(servicer, server)
        lifecycle_pb2_grpc.add_PluginLifecycleServiceServicer_to_server(self._lifecycle, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.set_serving(False)
        try:
            bound = server.add_secure_port(address, certificates.credentials())
        except RuntimeError:
            bound = 0
        if not bound or (port is not None and bound != port):
            raise ConfigurationError(f"could not bind {address}")
        await server.start()
        self._server = server

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The server's chain, outermost first: the duration histogram (when on;
        first, so calls the next one refuses are timed too), the core-only
        check, the server span."""
        return [
            *self._metrics.server_interceptors(),
            CoreOnlyInterceptor(self._trust_domain),
            TracingInterceptor(self._tracer),
        ]

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within `grace` seconds."""
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
