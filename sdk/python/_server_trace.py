"""Server spans of the plugin: a unary call the core forwards with a
`traceparent` (an operator-lane call) runs inside a server span that is a
child of the core's forward span, and the calls its handler makes carry the
span's own traceparent. Calls without one (the core's health checks and
lifecycle calls) are served untraced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from opentelemetry import trace

from vivified.sdk._trace import TRACEPARENT_HEADER, span

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """Opens a server span per traced unary call (method name only as attributes)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        parent = metadata.get(TRACEPARENT_HEADER, "")
        if not isinstance(parent, str) or not parent:
            return handler
        method: str = handler_call_details.method
        service, _, name = method.lstrip("/").partition("/")
        inner: Any = handler.unary_unary
        tracer = self._tracer

        async def unary_unary(request: Any, context: Any) -> Any:
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
            with span(tracer, method.lstrip("/"), trace.SpanKind.SERVER, attributes, parent=parent):
                return await inner(request, context)

        return cast(
            "grpc.RpcMethodHandler[_Req, _Resp]",
            grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            ),
        )
