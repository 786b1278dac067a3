"""Only the core may call a plugin.

The plugin's server requires a client certificate from the core's CA (checked
during the TLS handshake), but every plugin holds such a certificate too. This
interceptor therefore also requires the verified peer certificate to be an
X.509-SVID client leaf (CA:false, digitalSignature, no certificate signing,
clientAuth) whose single URI SAN is `spiffe://<trust-domain>/core`; any other caller gets
`PERMISSION_DENIED` with reason `CALLER_NOT_CORE` before a handler runs, so
plugins cannot call each other around the core. The identity is read from the
TLS auth context only, never from metadata."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from vivified.sdk._errors import SDK_DOMAIN
from vivified.sdk._identity import CLIENT_AUTH, svid_uri
from vivified.sdk._status import abort

CALLER_NOT_CORE = "CALLER_NOT_CORE"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Check = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


class _UriCache:
    """PEM bytes → the URI SAN of an SVID client leaf, bounded; parsing a
    certificate on every call would dominate small RPCs."""

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[bytes, str | None] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def uri(self, pem: bytes) -> str | None:
        with self._lock:
            if pem in self._entries:
                self._entries.move_to_end(pem)
                return self._entries[pem]
        uri = svid_uri(pem, CLIENT_AUTH)
        with self._lock:
            self._entries[pem] = uri
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return uri


class CoreOnlyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every caller whose verified certificate is not the core's."""

    def __init__(self, trust_domain: str) -> None:
        self._core_id = f"spiffe://{trust_domain}/core"
        self._uris = _UriCache()

    def is_core(self, context: grpc.aio.ServicerContext[Any, Any]) -> bool:
        certs = list(context.auth_context().get("x509_pem_cert") or [])
        return len(certs) == 1 and self._uris.uri(certs[0]) == self._core_id

    async def _check(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not self.is_core(context):
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "only the core may call this plugin",
                reason=CALLER_NOT_CORE,
                domain=SDK_DOMAIN,
            )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return cast("grpc.RpcMethodHandler[_Req, _Resp]", _guarded(handler, self._check))


def _guarded(handler: grpc.RpcMethodHandler[Any, Any], check: Check) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler with `check` run before its behaviour."""
    kwargs: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await check(context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            await check(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    streaming: Any = handler.unary_stream or handler.stream_stream

    async def stream_out(request: Any, context: Any) -> None:
        await check(context)
        result = streaming(request, context)
        if hasattr(result, "__aiter__"):
            # An async-generator handler: pass its responses through.
            async for response in result:
                await context.write(response)
        else:
            await result

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_out, **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream_out, **kwargs)
