"""Calling other plugins through the core (the operator lane).

The core forwards a contract call to the plugin named by the
`x-vivified-target` header, if both approved manifests declare it (the caller
under `calls`, the target under `provides`). Two ways to call:

    # one line: the operation is found from the request's type
    reply = await runtime.call("example-echo", SendMessageRequest(message=...))

    # or any generated stub on the core channel, with the target header
    stub = CommunicationPluginServiceStub(runtime.core_channel)
    reply = await stub.SendMessage(request, metadata=target_metadata("example-echo"))

Acting for a user: when a user's call reaches your plugin, the core adds a
short-lived delegation token (`x-vivified-delegation`) for your plugin alone.
Pass it on and the core checks the next call against the user's rights as
well as your manifest, and names the user in the audit record:

    async def SendMessage(self, request, context):
        await runtime.call("vault", RetrieveObjectRequest(...), on_behalf_of=delegation_of(context))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from opentelemetry import trace

from vivified.sdk._errors import ConfigurationError, from_rpc_error
from vivified.sdk._trace import span, trace_metadata

TARGET_HEADER = "x-vivified-target"
IDEMPOTENCY_HEADER = "x-vivified-idempotency-key"
DELEGATION_HEADER = "x-vivified-delegation"


def target_metadata(target: str, idempotency_key: str = "", on_behalf_of: str = "") -> tuple[tuple[str, str], ...]:
    """Metadata that routes a contract call on the core channel to `target`;
    `on_behalf_of` is the delegation token of the call being served."""
    pairs = [(TARGET_HEADER, target)]
    if idempotency_key:
        pairs.append((IDEMPOTENCY_HEADER, idempotency_key))
    if on_behalf_of:
        pairs.append((DELEGATION_HEADER, on_behalf_of))
    return tuple(pairs)


def delegation_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The delegation token the core sent with the call being served ("" when
    no user is behind it). Opaque: only the core can verify it."""
    return next(
        (v for k, v in context.invocation_metadata() or () if k == DELEGATION_HEADER and isinstance(v, str)), ""
    )


def method_for(request: Message) -> MethodDescriptor:
    """The contract method whose input is `request`'s type (one request type per RPC)."""
    descriptor = request.DESCRIPTOR
    found = [
        method
        for service in descriptor.file.services_by_name.values()
        for method in service.methods
        if method.input_type is descriptor and not method.client_streaming and not method.server_streaming
    ]
    if len(found) != 1:
        raise ConfigurationError(
            f"{descriptor.full_name} is the input of {len(found)} unary contract methods; call the stub instead",
            reason="METHOD_AMBIGUOUS",
        )
    # types-protobuf gives the upb backend's descriptors classes of their own, unrelated to
    # google.protobuf.descriptor's; at run time they are instances of those (DescriptorMetaclass).
    return found[0]  # type: ignore[return-value]


class PluginCaller:
    """Makes operator-lane calls on the current core channel."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], tracer: trace.Tracer | None = None) -> None:
        self._channel = channel
        self._tracer = tracer or trace.NoOpTracer()

    async def call(
        self,
        target: str,
        request: Message,
        *,
        timeout: float | None = None,
        idempotency_key: str = "",
        on_behalf_of: str = "",
    ) -> Message:
        """Call `target`'s operation for `request`; raises VivifiedSDKError subclasses."""
        method = method_for(request)
        output = message_factory.GetMessageClass(method.output_type)
        rpc = self._channel().unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=output.FromString,
        )
        name = f"{method.containing_service.full_name}/{method.name}"
        attributes = {"rpc.system": "grpc", "rpc.method": name, "vivified.target": target}
        with span(self._tracer, name, trace.SpanKind.CLIENT, attributes):
            try:
                metadata = target_metadata(target, idempotency_key, on_behalf_of) + trace_metadata()
                reply: Message = await rpc(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                raise from_rpc_error(err) from None
        return reply
