"""Trace context across a plugin: the W3C `traceparent` of the event being
handled travels on every call the handler makes through the core.

While a subscription handler runs, `current_traceparent()` is the delivered
event's `traceparent` (the core stamped it from the publish call's trace);
the SDK sends it as `traceparent` metadata on operator-lane calls, publishes
and tunnels, so the core continues that trace and every audit record of the
workflow carries one trace id. Outside a handler nothing is sent and the
core starts a trace of its own.

    with traced(event.event.traceparent):
        await runtime.call(...)   # continues the event's trace
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT_HEADER = "traceparent"
_FORMAT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("vivified_traceparent", default="")


def current_traceparent() -> str:
    """The traceparent the current task's calls carry ("" when none)."""
    return _CURRENT.get()


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """`(("traceparent", value),)` inside a traced scope, else empty."""
    value = _CURRENT.get()
    return ((TRACEPARENT_HEADER, value),) if value else ()


@contextlib.contextmanager
def traced(traceparent: str) -> Iterator[None]:
    """Make `traceparent` current for the block (ignored unless it is a
    well-formed version-00 W3C traceparent)."""
    token = _CURRENT.set(traceparent if _FORMAT.fullmatch(traceparent) else "")
    try:
        yield
    finally:
        _CURRENT.reset(token)


_PROPAGATOR = TraceContextTextMapPropagator()


@contextlib.contextmanager
def span(
    tracer: trace.Tracer,
    name: str,
    kind: trace.SpanKind,
    attributes: Mapping[str, str | int] | None = None,
    *,
    parent: str | None = None,
) -> Iterator[None]:
    """A span of this plugin, a child of `parent` (a traceparent; default: the
    current one). While it is open its own traceparent is the current one, so
    the calls made inside carry it. With a tracer that records nothing this is
    `traced(parent)` (or nothing without a parent). Attributes are ids and
    names only, never message fields."""
    upstream = _CURRENT.get() if parent is None else parent
    if not _FORMAT.fullmatch(upstream):
        upstream = ""
    if isinstance(tracer, trace.NoOpTracer):  # tracing off: only pass the context on
        with traced(upstream):
            yield
        return
    context = _PROPAGATOR.extract({TRACEPARENT_HEADER: upstream}) if upstream else Context()
    opened = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
    if not opened.is_recording():
        with traced(upstream):
            yield
        return
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(opened))
    token = _CURRENT.set(carrier.get(TRACEPARENT_HEADER, upstream))
    try:
        yield
    except BaseException as exc:
        opened.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        _CURRENT.reset(token)
        opened.end()
