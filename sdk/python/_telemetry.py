"""The plugin's tracer provider, configured only by the standard OpenTelemetry
variables, as the core's is: `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` switch OTLP/gRPC export on (the exporter
and the SDK read the other `OTEL_EXPORTER_OTLP_*`, `OTEL_TRACES_SAMPLER(_ARG)`,
`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*` themselves); `OTEL_SERVICE_NAME`
defaults to the plugin id. Without an endpoint, or with `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none`, no span is recorded and the SDK only passes the
trace context on (`vivified.sdk._trace`). RPC duration histograms go the same
way (`vivified.sdk._metrics`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def otlp_configured(environ: Mapping[str, str]) -> bool:
    """True when the standard variables ask for OTLP trace export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("otlp", ""):
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


@dataclass(frozen=True)
class PluginTracing:
    """The plugin's tracer (a no-op one when export is off) and its provider."""

    tracer: trace.Tracer
    provider: TracerProvider | None = None

    def shutdown(self) -> None:
        """Flush and stop the exporter (nothing to do when off)."""
        if self.provider is not None:
            self.provider.shutdown()


def plugin_resource(environ: Mapping[str, str], plugin_id: str) -> Resource:
    """What every span and metric of the plugin is exported with: its service
    name (the plugin id unless `OTEL_SERVICE_NAME`), plugin id and pid
    (plus `OTEL_RESOURCE_ATTRIBUTES`, merged in by the SDK)."""
    return Resource.create(
        {
            "service.name": environ.get("OTEL_SERVICE_NAME") or plugin_id,
            "vivified.plugin_id": plugin_id,
            "process.pid": os.getpid(),
        }
    )


def tracing_from_env(environ: Mapping[str, str], plugin_id: Callable[[], str]) -> PluginTracing:
    """The tracing the standard `OTEL_*` variables in `environ` describe (off unless configured)."""
    if not otlp_configured(environ):
        return PluginTracing(trace.NoOpTracer())
    # Imported only when used: the exporter pulls in the OTLP protos.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=plugin_resource(environ, plugin_id())
    )  # sampler from OTEL_TRACES_SAMPLER (default parentbased_always_on)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return PluginTracing(provider.get_tracer("vivified.sdk"), provider)
