"""The canonical event types the core knows: every message in
`vivified/events/v1/canonical.proto`, by fully-qualified name.

A module of its own (not part of `vivified.core.events`) because manifest
validation needs the list too, and the event bus depends, through the operator
lane's circuit breakers, on the registry, which validates manifests."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from vivified.events.v1 import canonical_pb2

CANONICAL_EVENT_TYPES: Mapping[str, type[Message]] = MappingProxyType(
    {
        descriptor.full_name: getattr(canonical_pb2, name)
        for name, descriptor in canonical_pb2.DESCRIPTOR.message_types_by_name.items()
    }
)
