"""The interceptor chain, assembled in exactly one place.

Order, outermost first (see ARCHITECTURE §3):

    error boundary → tracing → authentication → status gate → rate limit
    → concurrency caps → policy → audit → handler

The concurrency caps come after the rate limit (a call refused for its rate
never takes a slot) and before policy, so every call a principal has open —
allowed or about to be denied — counts against its caps.

Each layer is one class with one concern and the signature
`async (call: Call, proceed) -> None`. The chain is a single grpc.aio server
interceptor that wraps every handler kind, so unary and streaming calls pass
through the same layers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from vivified.core.chain._audit import AuditLayer, AuditRecorder
from vivified.core.chain._authn import (
    AuthenticationLayer,
    Authenticator,
    CredentialCheck,
)
from vivified.core.chain._call import Call, Proceed, _current
from vivified.core.chain._concurrency import ConcurrencyConfig, ConcurrencyLayer, ConcurrencyLimits
from vivified.core.chain._decode import decoded, refuse_undecodable, tolerant
from vivified.core.chain._deny import Denier
from vivified.core.chain._errors import ErrorBoundaryLayer
from vivified.core.chain._policy import PolicyLayer
from vivified.core.chain._rate_limit import RateLimitLayer, TokenBuckets
from vivified.core.chain._status_gate import PluginState, StatusGateLayer, StreamTracker
from vivified.core.chain._tracing import TracingLayer
from vivified.core.policy import Decision, RuleIndex


class Layer(Protocol):
    """One layer of the chain; `compose` passes `proceed` by keyword."""

    def __call__(self, call: Call, proceed: Proceed) -> Awaitable[None]: ...


def compose(layers: Sequence[Layer]) -> Proceed:
    """Nest the layers around the call's terminal handler, first = outermost."""

    async def terminal(call: Call) -> None:
        if call.terminal is None:
            raise RuntimeError("call has no handler")
        await call.terminal(call)

    proceed: Proceed = terminal
    for layer in reversed(layers):
        proceed = functools.partial(layer, proceed=proceed)
    return proceed


async def _write_all(result: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Send a streaming handler's responses, whether it yields or writes."""
    if inspect.isasyncgen(result):
        async for response in result:
            await context.write(response)
    else:
        await result


class ChainInterceptor(grpc.aio.ServerInterceptor):
    """Runs every RPC through the composed chain."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.run = compose(layers)
        """The composed layers; the benchmark drives it without the gRPC runtime."""

    def _call(self, details: grpc.HandlerCallDetails, context: Any, streaming: bool) -> Call:
        method = details.method
        _, service, name = method.split("/", 2) if method.count("/") == 2 else ("", "", method)
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        call = Call(
            method=method, service=service, method_name=name, metadata=metadata, context=context, streaming=streaming
        )
        _current.set(call)
        return call

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        run, details, new_call = self.run, handler_call_details, self._call
        kwargs = {
            "request_deserializer": tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                call = new_call(details, context, streaming=False)
                call.request = request

                async def invoke(c: Call) -> None:
                    refuse_undecodable(request)
                    c.response = await inner_uu(request, context)

                call.terminal = invoke
                await run(call)
                return call.response

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> None:
                call = new_call(details, context, streaming=True)
                call.request = request

                async def invoke(c: Call) -> None:
                    refuse_undecodable(request)
                    await _write_all(inner_us(request, context), context)

                call.terminal = invoke
                await run(call)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(request_iterator: Any, context: Any) -> Any:
                call = new_call(details, context, streaming=True)

                async def invoke(c: Call) -> None:
                    c.response = await inner_su(decoded(request_iterator), context)

                call.terminal = invoke
                await run(call)
                return call.response

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        inner_ss = handler.stream_stream

        async def stream_stream(request_iterator: Any, context: Any) -> None:
            call = new_call(details, context, streaming=True)

            async def invoke(c: Call) -> None:
                if inner_ss is None:  # a handler has one of the four behaviours: this one, by elimination
                    raise RuntimeError("handler has no behaviour")
                await _write_all(inner_ss(decoded(request_iterator), context), context)

            call.terminal = invoke
            await run(call)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


def build_chain(
    *,
    tracer: Any,
    authenticator: Authenticator,
    plugin_lookup: Callable[[str], PluginState | None],
    streams: StreamTracker,
    buckets: TokenBuckets,
    policy_index: Callable[[], RuleIndex],
    on_decision: Callable[[Decision], None],
    audit: AuditRecorder,
    on_done: Callable[[Call, grpc.StatusCode], None],
    credentials: CredentialCheck | None = None,
    registry_stale: Callable[[], str | None] | None = None,
    concurrency: ConcurrencyLimits | None = None,
) -> ChainInterceptor:
    """The one place the chain's order is decided. `credentials` verifies user
    access tokens and API keys; without it they are refused (UNAUTHENTICATED).
    `registry_stale` says why the registry view is too old to trust (the status
    gate then refuses certificate principals); None: always current.
    `concurrency` holds the per-principal stream and call caps; without it the
    chain applies the default caps (`ConcurrencyConfig()`)."""
    denier = Denier(audit)
    limits = concurrency or ConcurrencyLimits(ConcurrencyConfig)
    return ChainInterceptor(
        [
            ErrorBoundaryLayer(audit, on_done),
            TracingLayer(tracer),
            AuthenticationLayer(authenticator, denier, credentials),
            StatusGateLayer(plugin_lookup, streams, denier, registry_stale),
            RateLimitLayer(buckets, denier),
            ConcurrencyLayer(limits, denier),
            PolicyLayer(policy_index, denier, on_decision),
            AuditLayer(audit),
        ]
    )
