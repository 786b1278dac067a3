"""The one typed object every layer of the chain reads and writes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc


@dataclass(frozen=True)
class Principal:
    """Who is calling.

    kind is `plugin`, `operator` or `core` (from the verified TLS peer
    certificate), `user` (a verified bearer access token, accepted only from a
    peer without a client certificate, i.e. on the bootstrap port) or
    `anonymous` (neither). `traits` are a user's role traits; a plugin's come
    from the registry in the status gate."""

    kind: str
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
    """Per-call state, created by the chain for each RPC and passed to every layer."""

    method: str
    service: str
    method_name: str
    metadata: dict[str, str]
    context: grpc.aio.ServicerContext[Any, Any]
    streaming: bool
    request: Any = None
    response: Any = None
    terminal: Callable[[Call], Awaitable[None]] | None = None
    principal: Principal | None = None
    traits: frozenset[str] = frozenset()
    trace_id: str = ""
    rule_id: str = ""
    decision: str = ""
    reason: str = ""
    code: grpc.StatusCode | None = None
    audited: bool = False
    extra: dict[str, str] = field(default_factory=dict)
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
