"""Tracing: continue the caller's W3C trace context, or start a trace."""

from __future__ import annotations

import grpc
from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vivified.core.chain._call import Call, Proceed


class TracingLayer:
    """Opens a server span per call and records its trace id on the call.

    The span is current in the OpenTelemetry context while the call runs, so
    whatever the handler sends on (the operator lane, event envelopes) carries
    its trace. A span the sampler dropped records nothing, so it is made
    current without `start_as_current_span`'s context-manager machinery and
    without attributes it would discard: that machinery cost about as much
    as the rest of the chain together.

    A recorded span carries the method, the status code, the actor and, for
    a denied call, the rule and reason as a `vivified.policy.deny` event (ids
    only: never a request or response field)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        parent = self._propagator.extract(carrier=call.metadata)
        span = self._tracer.start_span(call.method, context=parent, kind=trace.SpanKind.SERVER)
        call.trace_id = format(span.get_span_context().trace_id, "032x")
        if span.is_recording():
            with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
                span.set_attribute("rpc.system", "grpc")
                span.set_attribute("rpc.service", call.service)
                span.set_attribute("rpc.method", call.method_name)
                try:
                    await proceed(call)
                finally:
                    _finish(span, call)
            return
        token = context.attach(trace.set_span_in_context(span))
        try:
            await proceed(call)
        finally:
            context.detach(token)


def _finish(span: trace.Span, call: Call) -> None:
    if call.principal is not None:
        span.set_attribute("vivified.actor", call.principal.actor)
    # The outcome the audit recorder settled for the call (ids and reasons only).
    outcome = call.trail.settled if call.trail is not None else None
    code = (outcome.code if outcome is not None else None) or grpc.StatusCode.OK
    reason = outcome.reason if outcome is not None else ""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if outcome is not None and outcome.decision == "deny":
        span.add_event(
            "vivified.policy.deny", {"vivified.rule_id": outcome.rule_id or call.rule_id, "vivified.reason": reason}
        )
    if code != grpc.StatusCode.OK:
        span.set_status(trace.StatusCode.ERROR, reason or code.name)
