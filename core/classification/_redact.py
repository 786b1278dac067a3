"""Redaction by data classification: fields a caller may not see are cleared."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from vivified.options.v1 import options_pb2

_REQUIRED = {
    options_pb2.CLASSIFICATION_PHI: "handles_phi",
    options_pb2.CLASSIFICATION_PII: "handles_pii",
    options_pb2.CLASSIFICATION_CONFIDENTIAL: "handles_confidential",
}


def required_trait(classification: int) -> str | None:
    """The trait a holder needs to see data of this classification, if any."""
    return _REQUIRED.get(options_pb2.Classification.ValueType(classification))


def _required_trait(field: FieldDescriptor) -> str | None:
    options = field.GetOptions()
    if not options.HasExtension(options_pb2.classification):
        return None
    return _REQUIRED.get(options.Extensions[options_pb2.classification])


def _holds_message(field: FieldDescriptor) -> bool:
    """Whether the field holds messages to look inside (map entries are not)."""
    message_type = field.message_type  # None unless the field holds messages (or groups)
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and message_type is not None
        and not message_type.GetOptions().map_entry
    )


def classification_of(message: Message) -> int:
    """The highest classification among the message's set fields, nested ones
    included (PUBLIC < INTERNAL < CONFIDENTIAL < PII < PHI, by enum number)."""
    highest: int = options_pb2.CLASSIFICATION_UNSPECIFIED
    for field, value in message.ListFields():
        options = field.GetOptions()
        if options.HasExtension(options_pb2.classification):
            highest = max(highest, options.Extensions[options_pb2.classification])
        if _holds_message(field):
            for item in value if field.is_repeated else (value,):
                highest = max(highest, classification_of(item))
    return highest


def redact(message: Message, traits: frozenset[str]) -> list[str]:
    """Clear, in place, every set field whose classification needs a trait the
    holder of `traits` lacks; returns the cleared fields' paths."""
    cleared: list[str] = []
    _walk(message, traits, "", cleared)
    return cleared


def _walk(message: Message, traits: frozenset[str], prefix: str, cleared: list[str]) -> None:
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        trait = _required_trait(field)
        if trait is not None and trait not in traits:
            message.ClearField(field.name)
            cleared.append(path)
        elif _holds_message(field):
            if field.is_repeated:
                for index, item in enumerate(value):
                    _walk(item, traits, f"{path}[{index}].", cleared)
            else:
                _walk(value, traits, f"{path}.", cleared)


def traits_to_see_all(descriptor: Descriptor) -> frozenset[str] | None:
    """Every trait `redact` could require on a message of this type: the
    traits of each classified field reachable the way `redact` walks (set
    fields, nested messages, repeated ones; not map entries, not inside an
    `Any`'s bytes). A holder of all of them has nothing cleared, so such a
    message can pass as bytes without being parsed. None where the walk is
    not static: a type with extension ranges (a set extension is walked too)."""
    required: set[str] = set()
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        if current.extension_ranges:
            return None
        for field in current.fields:
            trait = _required_trait(field)
            if trait is not None:
                required.add(trait)
            if _holds_message(field) and field.message_type is not None:
                pending.append(field.message_type)
    return frozenset(required)
