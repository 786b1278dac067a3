"""Checking and stamping the canonical envelope of a published event.

The core, not the publisher, sets the source plugin (from the verified
identity), the time, the trace context and the classification. An event is
refused when its type is not declared in the publisher's approved manifest,
when the payload's type does not match the event type, or when the payload
does not parse."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from google.protobuf.message import DecodeError, Message
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vivified.core.canonical_events import CANONICAL_EVENT_TYPES
from vivified.core.classification import classification_of
from vivified.core.clock import Clock
from vivified.core.errors import InvalidArgument, PermissionDenied
from vivified.core.events._store import NewEvent
from vivified.core.type_url import type_url_problem
from vivified.events.v1.events_pb2 import Event
from vivified.manifest.v1.manifest_pb2 import PluginManifest

DOMAIN = "vivified.events"
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PROPAGATOR = TraceContextTextMapPropagator()


class PluginView(Protocol):
    """What the event bus reads of a registered plugin."""

    @property
    def status(self) -> str: ...

    @property
    def granted_traits(self) -> frozenset[str]: ...

    @property
    def manifest(self) -> PluginManifest: ...


PluginLookup = Callable[[str], "PluginView | None"]


def not_declared(plugin_id: str, field: str, event_type: str) -> PermissionDenied:
    return PermissionDenied(
        f"{event_type!r} is not under {field} in plugin {plugin_id!r}'s approved manifest",
        reason="EVENT_NOT_DECLARED",
        domain=DOMAIN,
        metadata={"rule_id": f"manifest:{plugin_id}:{field}", "event_type": event_type[:200]},
    )


def current_traceparent() -> str:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def parse_payload(event: Event) -> Message:
    """The payload as its canonical message type."""
    message_class = CANONICAL_EVENT_TYPES.get(event.event_type)
    if message_class is None:
        raise InvalidArgument(
            f"event_type {event.event_type[:200]!r} is not a canonical event type",
            reason="EVENT_TYPE_UNKNOWN",
            domain=DOMAIN,
        )
    problem = type_url_problem(event.payload.type_url, event.event_type)
    if problem is not None:
        raise InvalidArgument(
            f"payload {problem} (the event_type)",
            reason="EVENT_PAYLOAD_MISMATCH",
            domain=DOMAIN,
        )
    message = message_class()
    try:
        message.ParseFromString(event.payload.value)
    except DecodeError:
        raise InvalidArgument(
            f"payload does not parse as {event.event_type}", reason="EVENT_PAYLOAD_MISMATCH", domain=DOMAIN
        ) from None
    known = message_class()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    if known.ByteSize() != message.ByteSize():
        # Fields outside the core's schema carry no classification, so they
        # could not be redacted: refused rather than passed on unchecked.
        raise InvalidArgument(
            f"payload carries fields that {event.event_type} in the core's contracts does not define",
            reason="EVENT_PAYLOAD_MISMATCH",
            domain=DOMAIN,
        )
    return message


class EnvelopeStamper:
    """Turns a publisher's event into the stored, core-stamped envelope."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def accept(self, plugin_id: str, publisher: PluginView, event: Event) -> NewEvent:
        if not _EVENT_ID.fullmatch(event.event_id):
            raise InvalidArgument(
                "event_id must be 1-128 characters of A-Z a-z 0-9 . _ : -", reason="EVENT_INVALID", domain=DOMAIN
            )
        if not event.HasField("payload"):
            raise InvalidArgument("payload is required", reason="EVENT_INVALID", domain=DOMAIN)
        if event.event_type not in publisher.manifest.publishes:
            raise not_declared(plugin_id, "publishes", event.event_type)
        payload = parse_payload(event)
        stored = Event()
        stored.CopyFrom(event)
        stored.source_plugin_id = plugin_id
        stored.time.FromDatetime(self._clock.now())
        stored.traceparent = current_traceparent()
        stored.classification = classification_of(payload)  # type: ignore[assignment]
        return NewEvent(
            event_id=event.event_id, event_type=event.event_type, source=plugin_id, data=stored.SerializeToString()
        )

    def core_event(self, event_id: str, payload: Message) -> NewEvent:
        """An event the core itself publishes (source `core`), e.g. a SecurityAlert."""
        event_type = payload.DESCRIPTOR.full_name
        stored = Event(
            event_id=event_id, event_type=event_type, source_plugin_id="core", traceparent=current_traceparent()
        )
        stored.time.FromDatetime(self._clock.now())
        stored.classification = classification_of(payload)  # type: ignore[assignment]
        stored.payload.Pack(payload)
        return NewEvent(event_id=event_id, event_type=event_type, source="core", data=stored.SerializeToString())
