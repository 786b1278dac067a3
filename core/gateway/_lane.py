"""One operator-lane call, shared by `Invoke` and transparent typed calls:
policy for the (caller, target, operation) pair, forwarding, redaction of the
response for the caller's traits, and the facts for the call's audit record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from vivified.core.chain import Principal, annotate
from vivified.core.classification import redact
from vivified.core.contracts import ContractMethod, contract_method
from vivified.core.errors import InvalidArgument
from vivified.core.gateway._forward import Forwarder, TargetError
from vivified.core.gateway._lane_policy import PolicySet
from vivified.core.registry import PluginRecord

_DOMAIN = "vivified.gateway"
TARGET_HEADER = "x-vivified-target"
IDEMPOTENCY_HEADER = "x-vivified-idempotency-key"
_PROPAGATOR = TraceContextTextMapPropagator()


def resolve_method(name: str) -> ContractMethod:
    method = contract_method(name)
    if method is None:
        raise InvalidArgument(
            f"{name[:200]!r} is not a known contract operation (pkg.Service/Method)",
            reason="INVALID_REQUEST",
            domain=_DOMAIN,
        )
    return method


class OperatorLane:
    """Carries one call from a caller plugin to a target plugin."""

    def __init__(
        self, *, policy: PolicySet, forwarder: Forwarder, lookup: Callable[[str], PluginRecord | None]
    ) -> None:
        self._policy = policy
        self._forwarder = forwarder
        self._lookup = lookup

    async def call(
        self,
        principal: Principal,
        target: str,
        method: ContractMethod,
        request: bytes,
        *,
        idempotency_key: str,
        remaining: float | None,
    ) -> Message:
        if not target:
            raise InvalidArgument("the target plugin id is required", reason="INVALID_REQUEST", domain=_DOMAIN)
        if len(idempotency_key) > 128:
            raise InvalidArgument("idempotency_key is longer than 128", reason="INVALID_REQUEST", domain=_DOMAIN)
        input_class = message_factory.GetMessageClass(method.input_type)
        try:
            input_class.FromString(request)
        except DecodeError:
            raise InvalidArgument(
                f"payload is not a valid {method.input_type.full_name}", reason="INVALID_REQUEST", domain=_DOMAIN
            ) from None
        caller = self._lookup(principal.id)
        traits = caller.granted_traits if caller is not None else frozenset()
        annotate(target=target, operation=method.full_name)
        rule = self._policy.check_call(principal.id, traits, target, method.full_name)
        annotate(lane_rule=rule)
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        metadata = [("x-vivified-caller", principal.id), *carrier.items()]
        if idempotency_key:
            metadata.append((IDEMPOTENCY_HEADER, idempotency_key))
        started = time.perf_counter()
        try:
            forwarded = await self._forwarder.forward(
                target,
                method,
                request,
                timeout=self._forwarder.timeout_for(remaining),
                retryable=method.idempotent or bool(idempotency_key),
                metadata=metadata,
            )
        except TargetError as err:
            annotate(attempts=str(err.attempts))
            raise
        finally:
            annotate(latency_ms=f"{(time.perf_counter() - started) * 1000:.1f}")
        annotate(attempts=str(forwarded.attempts))
        response = message_factory.GetMessageClass(method.output_type).FromString(forwarded.response)
        cleared = redact(response, traits)
        if cleared:
            annotate(redacted=",".join(cleared))
        return response


def remaining_time(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else float(remaining)
