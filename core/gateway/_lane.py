"""One operator-lane call, shared by `Invoke` and transparent typed calls:
policy for the (caller, target, operation) pair, forwarding, redaction of the
response for the caller's traits, and the facts for the call's audit record.

Callers are plugins (mTLS) or users (bearer token or API key on the bootstrap
port). A user's call, and a plugin's call that presents the delegation token
the core gave it for a user, carry that user to the target as a fresh
delegation token for the target (see `vivified.core.identity._delegation`);
both the plugin's manifest and the user's rights must allow such a call, and
the response is redacted for the traits both hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vivified.core.chain import Principal, PrincipalKind, annotate
from vivified.core.classification import redact, traits_to_see_all
from vivified.core.contracts import ContractMethod, contract_method
from vivified.core.errors import InvalidArgument
from vivified.core.gateway._forward import Forwarder, TargetError
from vivified.core.gateway._lane_policy import PolicySet
from vivified.core.identity import (
    DELEGATION_HEADER,
    ON_BEHALF_OF_HEADER,
    Delegations,
    Delegator,
)
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


_MAX_DECISIONS = 4096


class PassThrough:
    """Whether a method's response may go back to a caller as the target's
    bytes, unparsed: when `redact` could clear nothing in it for the caller's
    traits (the response type has no classified field the caller lacks a
    trait for). Decided once per (method, traits) and kept (bounded); the
    call's redaction itself is unchanged wherever it can clear something."""

    def __init__(self) -> None:
        self._needs: dict[str, frozenset[str] | None] = {}
        self._decided: dict[tuple[str, frozenset[str]], bool] = {}

    def __call__(self, method: ContractMethod, traits: frozenset[str]) -> bool:
        key = (method.full_name, traits)
        decided = self._decided.get(key)
        if decided is None:
            if method.full_name not in self._needs:
                self._needs[method.full_name] = traits_to_see_all(method.output_type)
            needed = self._needs[method.full_name]
            decided = needed is not None and needed <= traits
            if len(self._decided) >= _MAX_DECISIONS:
                self._decided.clear()
            self._decided[key] = decided
        return decided


class OperatorLane:
    """Carries one call from a caller plugin to a target plugin."""

    def __init__(
        self,
        *,
        policy: PolicySet,
        forwarder: Forwarder,
        lookup: Callable[[str], PluginRecord | None],
        delegations: Delegations,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._policy = policy
        self._forwarder = forwarder
        self._lookup = lookup
        self._delegations = delegations
        self._pass_through = PassThrough()

    async def _authorise(
        self, principal: Principal, target: str, method: str, delegation: str
    ) -> tuple[frozenset[str], Delegator | None]:
        """Raise unless the call is allowed; returns the traits the response is
        redacted for and the user the call is made for, if any."""
        if principal.kind == PrincipalKind.USER:
            caller_user = self._delegations.of_user(principal)
            annotate(lane_rule=self._policy.check_user_call(caller_user.user_id, caller_user.traits, target, method))
            return caller_user.traits, caller_user
        caller = self._lookup(principal.id)
        traits = caller.granted_traits if caller is not None else frozenset()
        user = await self._delegations.verify(delegation, principal.id) if delegation else None
        if user is not None:
            annotate(on_behalf_of=f"user:{user.user_id}")
        annotate(lane_rule=self._policy.check_call(principal.id, traits, target, method))
        if user is None:
            return traits, None
        annotate(
            user_rule=self._policy.check_user_operation(user.user_id, user.traits, method, reason="DELEGATION_DENIED")
        )
        return traits & user.traits, user

    async def call(
        self,
        principal: Principal,
        target: str,
        method: ContractMethod,
        request: bytes,
        *,
        idempotency_key: str,
        remaining: float | None,
        delegation: str,
    ) -> bytes:
        """The target's response for the caller, serialised: its own bytes
        where redaction can clear nothing for the caller's traits, else the
        parsed response with the fields the caller may not see cleared."""
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
        annotate(target=target, operation=method.full_name)
        traits, user = await self._authorise(principal, target, method.full_name, delegation)
        # The forward is a client span of its own: the target's server span is its child.
        # Attributes are ids only (never request or response fields).
        span = self._tracer.start_span(
            "vivified.gateway/forward",
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.method": method.full_name, "vivified.target": target},
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        metadata = list(carrier.items())
        if principal.kind == PrincipalKind.PLUGIN:
            metadata.append(("x-vivified-caller", principal.id))
        if user is not None:
            metadata += [
                (DELEGATION_HEADER, self._delegations.issue(user, target)),
                (ON_BEHALF_OF_HEADER, user.user_id),
            ]
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
            span.set_attribute("vivified.attempts", forwarded.attempts)
        except TargetError as err:
            annotate(attempts=str(err.attempts))
            span.set_attribute("vivified.attempts", err.attempts)
            span.set_status(trace.StatusCode.ERROR, err.reason)
            raise
        finally:
            annotate(latency_ms=f"{(time.perf_counter() - started) * 1000:.1f}")
            span.end()
        annotate(attempts=str(forwarded.attempts))
        if self._pass_through(method, traits):
            return forwarded.response
        response = message_factory.GetMessageClass(method.output_type).FromString(forwarded.response)
        cleared = redact(response, traits)
        if cleared:
            annotate(redacted=",".join(cleared))
            return response.SerializeToString()
        return forwarded.response


def remaining_time(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else float(remaining)
