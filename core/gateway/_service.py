"""The operator lane's two front doors: `OperatorGatewayService.Invoke` and
transparent typed calls (a contract method called on the core with the
`x-vivified-target` header, forwarded as bytes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from vivified.core.chain import Principal
from vivified.core.contracts import CONTRACT_METHODS, ContractMethod
from vivified.core.errors import InvalidArgument
from vivified.core.gateway._lane import (
    IDEMPOTENCY_HEADER,
    TARGET_HEADER,
    OperatorLane,
    remaining_time,
    resolve_method,
)
from vivified.core.identity import DELEGATION_HEADER
from vivified.core.type_url import type_url_problem
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc

_DOMAIN = "vivified.gateway"


def _header(context: Any, name: str) -> str:
    return next((v for k, v in context.invocation_metadata() or () if k == name and isinstance(v, str)), "")


class GatewayService(gateway_pb2_grpc.OperatorGatewayServiceServicer):
    """`Invoke`: target + method + Any payload → Any response."""

    def __init__(self, lane: OperatorLane, identify: Callable[[Any], Principal]) -> None:
        self._lane = lane
        self._identify = identify

    async def Invoke(self, request: gateway_pb2.InvokeRequest, context: Any) -> gateway_pb2.InvokeResponse:
        method = resolve_method(request.method)
        problem = type_url_problem(request.payload.type_url, method.input_type.full_name)
        if problem is not None:
            raise InvalidArgument(
                f"{method.full_name} takes {method.input_type.full_name}: the payload's {problem}",
                reason="INVALID_REQUEST",
                domain=_DOMAIN,
            )
        response = await self._lane.call(
            self._identify(context),
            request.target_plugin_id,
            method,
            request.payload.value,
            idempotency_key=request.idempotency_key,
            remaining=remaining_time(context),
            delegation=_header(context, DELEGATION_HEADER),
        )
        reply = gateway_pb2.InvokeResponse()
        # What `Any.Pack` would write, from the response bytes as they are.
        reply.payload.type_url = f"type.googleapis.com/{method.output_type.full_name}"
        reply.payload.value = response
        return reply


class ContractProxy(grpc.GenericRpcHandler):
    """Serves every unary contract method on the core and forwards it to the
    plugin named by the `x-vivified-target` header."""

    def __init__(self, lane: OperatorLane, identify: Callable[[Any], Principal]) -> None:
        # One handler per contract method, built once: `service` runs per call.
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            f"/{name}": grpc.unary_unary_rpc_method_handler(self._forwarding(lane, identify, method))
            for name, method in CONTRACT_METHODS.items()
        }

    @staticmethod
    def _forwarding(
        lane: OperatorLane, identify: Callable[[Any], Principal], method: ContractMethod
    ) -> Callable[[bytes, Any], Awaitable[bytes]]:
        async def forward(request: bytes, context: Any) -> bytes:
            headers = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            return await lane.call(
                identify(context),
                headers.get(TARGET_HEADER, ""),
                method,
                request,
                idempotency_key=headers.get(IDEMPOTENCY_HEADER, ""),
                remaining=remaining_time(context),
                delegation=headers.get(DELEGATION_HEADER, ""),
            )

        return forward

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        return self._handlers.get(handler_call_details.method)
