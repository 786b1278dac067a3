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
from collections.abc import Iterator

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
