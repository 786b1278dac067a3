"""Tracing: continue the caller's W3C trace context, or start a trace."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from vivified.core.chain._call import Call, Proceed


class TracingLayer:
    """Opens a server span per call and records its trace id on the call."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        parent = self._propagator.extract(carrier=call.metadata)
        with self._tracer.start_as_current_span(
            call.method, context=parent, kind=trace.SpanKind.SERVER, record_exception=False
        ) as span:
            call.trace_id = format(span.get_span_context().trace_id, "032x")
            span.set_attribute("rpc.system", "grpc")
            span.set_attribute("rpc.method", call.method)
            await proceed(call)
            if call.principal is not None:
                span.set_attribute("vivified.actor", call.principal.actor)
