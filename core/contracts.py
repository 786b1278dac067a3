"""The contract services plugins implement, as the core knows them.

One place maps a full method name (`pkg.Service/Method`) to its descriptor:
manifest validation checks `provides`/`calls` against it, and the operator
lane uses it to type-check payloads, find idempotency and redact outputs."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor

from vivified.communication.v1 import communication_pb2
from vivified.directory.v1 import directory_pb2
from vivified.identity.v1 import identity_plugin_pb2
from vivified.storage.v1 import storage_pb2

_FILES = (communication_pb2, storage_pb2, identity_plugin_pb2, directory_pb2)
CONTRACT_SERVICES: dict[str, ServiceDescriptor] = {
    service.full_name: service for module in _FILES for service in module.DESCRIPTOR.services_by_name.values()
}

_IDEMPOTENT = (
    descriptor_pb2.MethodOptions.IDEMPOTENT,
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
)


@dataclass(frozen=True)
class ContractMethod:
    """One unary contract operation."""

    service: str
    name: str
    input_type: Descriptor
    output_type: Descriptor
    idempotent: bool

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.name}"

    @property
    def path(self) -> str:
        """The gRPC path, `/pkg.Service/Method`."""
        return f"/{self.service}/{self.name}"


def _method(descriptor: MethodDescriptor) -> ContractMethod:
    level = descriptor.GetOptions().idempotency_level
    return ContractMethod(
        service=descriptor.containing_service.full_name,
        name=descriptor.name,
        input_type=descriptor.input_type,
        output_type=descriptor.output_type,
        idempotent=level in _IDEMPOTENT,
    )


CONTRACT_METHODS: dict[str, ContractMethod] = {
    f"{service.full_name}/{method.name}": _method(method)
    for service in CONTRACT_SERVICES.values()
    for method in service.methods
    if not method.client_streaming and not method.server_streaming
}


def contract_method(name: str) -> ContractMethod | None:
    """Look up `pkg.Service/Method` (a leading `/` is accepted)."""
    return CONTRACT_METHODS.get(name.removeprefix("/"))
