"""The one typed object every layer of the chain reads and writes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc

from vivified.core.chain._methods import DEFAULT_FACTS, MethodFacts
from vivified.core.chain._outcome import Trail
from vivified.core.kinds import PrincipalKind


@dataclass(frozen=True)
class Principal:
    """Who is calling.

    kind is `plugin`, `operator` or `core` (from the verified TLS peer
    certificate), `user` (a verified bearer access token, accepted only from a
    peer without a client certificate, i.e. on the bootstrap port) or
    `anonymous` (neither). `traits` are a user's role traits; a plugin's come
    from the registry in the status gate."""

    kind: PrincipalKind
    id: str
    cert_serial: int | None = None
    traits: frozenset[str] = frozenset()
    session_id: str | None = None
    api_key_id: str | None = None
    """Set for a user who called with an API key (then `session_id` is None)."""

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Call:
    """Per-call facts, created by the chain for each RPC and passed to every layer.

    Layers add what they established (the principal, its traits, the trace
    id, the rule that allowed the call, facts for the audit record); they
    return or raise their outcome (`Denied`, a `VivifiedError`) rather than
    writing it here. What the call's audit record said and whether it was
    written is the `AuditRecorder`'s business (`trail`)."""

    method: str
    service: str
    method_name: str
    metadata: dict[str, str]
    context: grpc.aio.ServicerContext[Any, Any]
    streaming: bool
    facts: MethodFacts = DEFAULT_FACTS
    request: Any = None
    response: Any = None
    terminal: Callable[[Call], Awaitable[None]] | None = None
    principal: Principal | None = None
    traits: frozenset[str] = frozenset()
    trace_id: str = ""
    rule_id: str = ""
    """The rule that decided the call (policy's, or a hook's such as break-glass)."""
    extra: dict[str, str] = field(default_factory=dict)
    trail: Trail | None = field(default=None, repr=False)
    """Kept by the AuditRecorder alone: the call's settled outcome and whether it was written."""
    started: float = field(default_factory=time.perf_counter)
    """`time.perf_counter()` when the chain received the call (the RPC duration metric)."""

    @property
    def actor(self) -> str:
        return self.principal.actor if self.principal else "unauthenticated:"


Proceed = Callable[[Call], Awaitable[None]]


# The call being handled in the current task. grpc.aio runs each RPC in its own
# task, so a handler (which only receives the request and the servicer
# context) can reach its own Call, e.g. to add facts to its audit record.
_current: ContextVar[Call | None] = ContextVar("vivified_current_call", default=None)


def current_call() -> Call | None:
    """The Call of the RPC running in this task, if the chain is handling one."""
    return _current.get()


def annotate(**fields: str) -> None:
    """Add facts (ids, counts, addresses — never bodies or secrets) to the
    audit record of the current call."""
    call = _current.get()
    if call is not None:
        call.extra.update(fields)


def call_principal(_context: object = None) -> Principal:
    """The principal the chain's authentication set for the current call —
    for handlers serving users as well as plugins (a user's identity is in
    metadata the chain verified, not in the TLS peer)."""
    call = _current.get()
    if call is None or call.principal is None:
        raise RuntimeError("no authenticated call in this task")
    return call.principal
