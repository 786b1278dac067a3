"""The plugin's RPC duration histograms, exported over OTLP/gRPC the way its
spans are (`vivified.sdk._telemetry`): on only when the standard variables
configure it — `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` set, `OTEL_METRICS_EXPORTER` unset or
`otlp`, `OTEL_SDK_DISABLED` not `true`. The exporter and the SDK read the
other variables themselves (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s;
`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`; headers, certificates).

Names and attributes follow OpenTelemetry's RPC semantic conventions as of
v1.37, the version the SDK's spans already follow (`rpc.system`,
`rpc.service`, `rpc.method`, `rpc.grpc.status_code`):

- `rpc.server.duration` (ms): every unary call this plugin serves — the
  core's forwarded operator-lane calls, its lifecycle and health calls —
  including ones the core-only check refuses;
- `rpc.client.duration` (ms): every unary call this plugin makes to the core
  (`runtime.call`, publish, heartbeats, renewals, fetches), with
  `vivified.target` (the target plugin id) on operator-lane calls.

The plugin id and service name are on the resource. No attribute carries a
message field, a header value other than the target id, or a credential.
Streams (subscriptions, tunnels, storage transfers) are not timed: their
duration is their lifetime, not a latency. With export off no interceptor is
installed, so calls pay nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import grpc
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from vivified.sdk._calls import TARGET_HEADER

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

SERVER_DURATION = "rpc.server.duration"
CLIENT_DURATION = "rpc.client.duration"
# The core's vivified_rpc_duration_seconds buckets, in milliseconds, so both sides compare.
BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0)


def metrics_configured(environ: Mapping[str, str]) -> bool:
    """True when the standard variables ask for OTLP metric export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() not in ("otlp", ""):
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _attributes(method: str, code: grpc.StatusCode) -> dict[str, str | int]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "rpc.grpc.status_code": code.value[0]}


@dataclass(frozen=True)
class RpcDurations:
    """The two histograms; `record_*` take the full method (`/pkg.Service/Method`)."""

    server: Histogram
    client: Histogram

    def record_server(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.server.record(seconds * 1000.0, _attributes(method, code))

    def record_client(self, method: str, code: grpc.StatusCode, seconds: float, target: str = "") -> None:
        attributes = _attributes(method, code)
        if target:
            attributes["vivified.target"] = target
        self.client.record(seconds * 1000.0, attributes)


@dataclass(frozen=True)
class PluginMetrics:
    """The plugin's RPC histograms (None when export is off) and their provider."""

    durations: RpcDurations | None = None
    provider: MeterProvider | None = None
    clock: Callable[[], float] = field(default=time.perf_counter)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """What the plugin's server adds to time its calls (nothing when off)."""
        return [ServerDurationInterceptor(self.durations, self.clock)] if self.durations else []

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """What the core channel adds to time the plugin's calls (nothing when off)."""
        return [ClientDurationInterceptor(self.durations, self.clock)] if self.durations else []

    def shutdown(self) -> None:
        """Export what was recorded since the last export, then stop (nothing to do when off)."""
        if self.provider is not None:
            self.provider.shutdown()


def metrics_from_env(environ: Mapping[str, str], resource: Callable[[], Resource]) -> PluginMetrics:
    """The metrics the standard `OTEL_*` variables in `environ` describe (off unless configured)."""
    if not metrics_configured(environ):
        return PluginMetrics()
    # Imported only when used: the exporter pulls in the OTLP protos.
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(OTLPMetricExporter())  # interval: OTEL_METRIC_EXPORT_INTERVAL
    # A provider of the plugin's own, never the global one (several runtimes may share a process).
    provider = MeterProvider(metric_readers=[reader], resource=resource())
    meter = provider.get_meter("vivified.sdk")
    durations = RpcDurations(
        server=meter.create_histogram(
            SERVER_DURATION,
            unit="ms",
            description="Duration of unary RPCs the plugin served.",
            explicit_bucket_boundaries_advisory=BUCKETS_MS,
        ),
        client=meter.create_histogram(
            CLIENT_DURATION,
            unit="ms",
            description="Duration of unary RPCs the plugin made to the core.",
            explicit_bucket_boundaries_advisory=BUCKETS_MS,
        ),
    )
    return PluginMetrics(durations, provider)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _served_code(context: Any, exc: BaseException | None) -> grpc.StatusCode:
    """The code a served call ends with: the one the handler set or aborted
    with (grpc.aio reports it as a number), else OK, or UNKNOWN if it raised
    (CANCELLED if it was cancelled)."""
    value = context.code()
    code = value if isinstance(value, grpc.StatusCode) else _CODES.get(value) if isinstance(value, int) else None
    if code is not None and code != grpc.StatusCode.OK:
        return code
    if exc is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.CANCELLED if isinstance(exc, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN


class ServerDurationInterceptor(grpc.aio.ServerInterceptor):
    """Times every unary call the plugin serves, refused ones included (it is first in the chain)."""

    def __init__(self, durations: RpcDurations, clock: Callable[[], float]) -> None:
        self._durations = durations
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown methods are not recorded: their names are the caller's choice
        method: str = handler_call_details.method
        inner: Any = handler.unary_unary
        durations, clock = self._durations, self._clock

        async def unary_unary(request: Any, context: Any) -> Any:
            started = clock()
            try:
                reply = await inner(request, context)
            except BaseException as exc:
                durations.record_server(method, _served_code(context, exc), clock() - started)
                raise
            durations.record_server(method, _served_code(context, None), clock() - started)
            return reply

        return cast(
            "grpc.RpcMethodHandler[_Req, _Resp]",
            grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            ),
        )


class ClientDurationInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Times every unary call on the core channel, to its final status."""

    def __init__(self, durations: RpcDurations, clock: Callable[[], float]) -> None:
        self._durations = durations
        self._clock = clock

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.UnaryUnaryCall[Any, Any]]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> grpc.aio.UnaryUnaryCall[Any, Any]:
        started = self._clock()
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        target = ""
        for key, value in client_call_details.metadata or ():
            if key == TARGET_HEADER and isinstance(value, str):
                target = value
        code = grpc.StatusCode.UNKNOWN
        try:
            call = await continuation(client_call_details, request)
            await call  # the status is known once the reply (or the error) is in
            code = grpc.StatusCode.OK
            return call
        except grpc.aio.AioRpcError as err:
            code = err.code()
            raise
        except BaseException:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._durations.record_client(method, code, self._clock() - started, target)
