"""The core's tracer provider, configured only by the standard OpenTelemetry
variables: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
switch export on (the other `OTEL_EXPORTER_OTLP_*` variables, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_BSP_*` are read
by the OpenTelemetry SDK and exporter themselves). Without an endpoint, or with
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`, nothing is sampled and
nothing is exported (the chain still continues callers' trace ids)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

DEFAULT_SERVICE_NAME = "vivified-core"


def otlp_configured(environ: Mapping[str, str]) -> bool:
    """True when the standard variables ask for OTLP trace export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("otlp", ""):
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


@dataclass(frozen=True)
class Tracing:
    """The provider and whether it exports; `shutdown` flushes pending spans."""

    provider: TracerProvider
    exporting: bool

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer of the provider: even unsampled, its spans carry ids that continue a trace."""
        return self.provider.get_tracer(name)

    def span_tracer(self, name: str) -> trace.Tracer:
        """For spans that only add detail (events, egress): a no-op tracer, which costs
        nothing per call, unless export is on."""
        return self.provider.get_tracer(name) if self.exporting else trace.NoOpTracer()

    def shutdown(self) -> None:
        self.provider.shutdown()


def tracing_from_env(environ: Mapping[str, str] | None = None) -> Tracing:
    """The provider the standard `OTEL_*` variables describe (off unless configured).

    The exporter reads its settings from the process environment, so `environ`
    other than `os.environ` only decides whether export is on."""
    env = os.environ if environ is None else environ
    if not otlp_configured(env):
        return Tracing(TracerProvider(sampler=ParentBased(ALWAYS_OFF)), exporting=False)
    # Imported only when used: the exporter pulls in the OTLP protos.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME, "process.pid": os.getpid()}
    )
    # sampler=None: the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    # (default parentbased_always_on).
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracing(provider, exporting=True)
