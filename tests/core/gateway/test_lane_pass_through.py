"""The operator lane's pass-through decision: a response goes back as the
target's bytes only when `redact` could clear nothing in it for the caller's
traits. Checked against `redact` itself on fully populated responses of every
contract method, so the static decision can never skip a redaction."""

from __future__ import annotations

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from vivified.core.classification import redact, traits_to_see_all
from vivified.core.contracts import CONTRACT_METHODS, contract_method
from vivified.core.gateway._lane import PassThrough

_SCALARS = {
    FieldDescriptor.CPPTYPE_STRING: "x",
    FieldDescriptor.CPPTYPE_BOOL: True,
    FieldDescriptor.CPPTYPE_INT32: 7,
    FieldDescriptor.CPPTYPE_INT64: 7,
    FieldDescriptor.CPPTYPE_UINT32: 7,
    FieldDescriptor.CPPTYPE_UINT64: 7,
    FieldDescriptor.CPPTYPE_FLOAT: 1.5,
    FieldDescriptor.CPPTYPE_DOUBLE: 1.5,
}


def _scalar(field: FieldDescriptor) -> object:
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        values = field.enum_type.values
        return values[-1].number
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"x"
    return _SCALARS[field.cpp_type]


def _fill(message: Message, depth: int = 0) -> None:
    """Set every field (one item of each repeated one), nested messages too."""
    descriptor: Descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            container = getattr(message, field.name)
            if value_field.message_type is None:
                key_field = field.message_type.fields_by_name["key"]
                container[_scalar(key_field)] = _scalar(value_field)
            continue
        if field.message_type is not None:
            if depth > 5:
                continue
            if field.is_repeated:
                _fill(getattr(message, field.name).add(), depth + 1)
            else:
                _fill(getattr(message, field.name), depth + 1)
            continue
        if field.is_repeated:
            getattr(message, field.name).append(_scalar(field))
        elif field.containing_oneof is None or not message.WhichOneof(field.containing_oneof.name):
            setattr(message, field.name, _scalar(field))


def _filled(descriptor: Descriptor) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    _fill(message)
    return message


def test_holding_every_needed_trait_means_redact_clears_nothing_in_any_contract_response() -> None:
    checked_classified = 0
    for method in CONTRACT_METHODS.values():
        needed = traits_to_see_all(method.output_type)
        assert needed is not None, method.full_name
        assert redact(_filled(method.output_type), needed) == [], method.full_name
        # Missing any one of them, a populated response does have something cleared.
        for trait in needed:
            assert redact(_filled(method.output_type), needed - {trait}), (method.full_name, trait)
            checked_classified += 1
    assert checked_classified > 0  # the contracts do carry classified fields


def test_pass_through_only_for_callers_holding_every_needed_trait() -> None:
    retrieve = contract_method("vivified.storage.v1.StoragePluginService/RetrieveObject")
    send = contract_method("vivified.communication.v1.CommunicationPluginService/SendMessage")
    profiles = contract_method("vivified.directory.v1.DirectoryService/ListProfiles")
    assert retrieve is not None and send is not None and profiles is not None
    decide = PassThrough()
    assert decide(send, frozenset())  # no classified field: bytes pass
    assert not decide(retrieve, frozenset({"storage_plugin"}))
    assert decide(retrieve, frozenset({"storage_plugin", "handles_confidential"}))
    assert not decide(profiles, frozenset({"handles_confidential"}))  # nested, repeated PII
    assert decide(profiles, traits_to_see_all(profiles.output_type) or frozenset())
    # Decided once and kept: the same answer again, from the cache.
    assert not decide(retrieve, frozenset({"storage_plugin"}))
    assert len(decide._decided) == 5  # noqa: SLF001
