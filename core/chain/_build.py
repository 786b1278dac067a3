"""The interceptor chain, assembled in exactly one place.

Order, outermost first (see ARCHITECTURE §3):

    error boundary → tracing → authentication → status gate → rate limit
    → concurrency caps → policy → audit → handler

The concurrency caps come after the rate limit (a call refused for its rate
never takes a slot) and before policy, so every call a principal has open —
allowed or about to be denied — counts against its caps.

Each layer is one class with one concern and the signature
`async (call: Call, proceed) -> None`; it adds what it established to the
call (principal, traits, trace id, the deciding rule) and raises its refusal
(`Denied`) instead of recording or aborting itself. The error boundary
sends every status, after the recorder settled the call's one audit record.
The chain is a single grpc.aio server interceptor that wraps every handler
kind, so unary and streaming calls pass through the same layers. What the
layers know of a method (when it is audited, which resource its request
names) comes from `ChainDeps.methods`, the table `vivified.core.services`
declares per binding; no layer tests method names.

Denial before deserialisation. grpc's aborting-handler pattern (return, from
`intercept_service`, a handler that only aborts) decides on what
`HandlerCallDetails` holds: the method name and the invocation metadata. In
grpc-python that is not enough for any check of this chain: the caller's
identity is its verified TLS certificate, which only the servicer context
(`auth_context()`) exposes, and grpc.aio creates that context only for the
handler it calls: with a unary request already read and deserialised, or
with a request stream whose messages are deserialised as the handler reads
them (so a refused stream never has its messages decoded). Authentication, the status
gate, the rate limit and the concurrency caps are all keyed by that principal,
and policy decides on its kind, id and traits, so every layer runs inside the
handler. A check on the method alone (a method no rule names) cannot move
out either: its denial must still be audited with the caller's actor and
counted against the caller's rate and caps, as now. The request is decoded
tolerantly (`_decode`): bytes that do not decode reach the chain as a value,
so such a call is authenticated, checked and audited like any other before
its handler step refuses it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from vivified.core.chain._audit import AuditLayer
from vivified.core.chain._authn import AuthenticationLayer
from vivified.core.chain._call import Call, Proceed, _current
from vivified.core.chain._concurrency import ConcurrencyLayer
from vivified.core.chain._decode import decoded, refuse_undecodable, tolerant
from vivified.core.chain._deps import ChainDeps
from vivified.core.chain._errors import ErrorBoundaryLayer
from vivified.core.chain._methods import DEFAULT_FACTS, MethodTable
from vivified.core.chain._policy import PolicyLayer
from vivified.core.chain._rate_limit import RateLimitLayer
from vivified.core.chain._status_gate import StatusGateLayer
from vivified.core.chain._tracing import TracingLayer


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

    def __init__(self, layers: Sequence[Layer], methods: MethodTable | None = None) -> None:
        self.run = compose(layers)
        """The composed layers; the benchmark drives it without the gRPC runtime."""
        self.methods: MethodTable = methods or {}
        """What the layers know of each method (`Call.facts`), by full name."""

    def _call(self, details: grpc.HandlerCallDetails, context: Any, streaming: bool) -> Call:
        method = details.method
        _, service, name = method.split("/", 2) if method.count("/") == 2 else ("", "", method)
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        call = Call(
            method=method,
            service=service,
            method_name=name,
            metadata=metadata,
            context=context,
            streaming=streaming,
            facts=self.methods.get(method, DEFAULT_FACTS),
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


def build_chain(deps: ChainDeps) -> ChainInterceptor:
    """The one place the chain's order is decided, from its dependencies
    (see `ChainDeps` for what each one is and its default)."""
    return ChainInterceptor(
        [
            ErrorBoundaryLayer(deps.audit, deps.on_done),
            TracingLayer(deps.tracer),
            AuthenticationLayer(deps.authenticator, deps.credentials),
            StatusGateLayer(deps.plugin_lookup, deps.streams, deps.registry_stale),
            RateLimitLayer(deps.buckets),
            ConcurrencyLayer(deps.concurrency),
            PolicyLayer(deps.policy_index, deps.on_decision),
            AuditLayer(deps.audit),
        ],
        deps.methods,
    )
