"""The two error edges of the chain.

`ErrorBoundaryLayer` (outermost) turns any unexpected exception into a
sanitised INTERNAL, auditing it when no inner layer did. `DomainErrorLayer`
(innermost) maps `VivifiedError` raised by handlers to canonical codes with a
`google.rpc.ErrorInfo` detail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._deny import AuditSink
from vivified.core.chain._status import abort_with
from vivified.core.errors import VivifiedError

_log = logging.getLogger(__name__)


class ErrorBoundaryLayer:
    """Outermost: nothing unexpected leaks to the caller; every call is counted."""

    def __init__(self, audit: AuditSink, on_done: Callable[[Call, grpc.StatusCode], None]) -> None:
        self._audit = audit
        self._on_done = on_done

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        try:
            await proceed(call)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            self._on_done(call, call.code or grpc.StatusCode.CANCELLED)
            raise
        except Exception:
            _log.exception("unexpected error in %s (trace %s)", call.method, call.trace_id)
            call.code = grpc.StatusCode.INTERNAL
            call.reason = call.reason or "INTERNAL"
            if not call.audited:
                await self._audit.record(call, outcome="INTERNAL")
                call.audited = True
            self._on_done(call, grpc.StatusCode.INTERNAL)
            await abort_with(
                call.context,
                grpc.StatusCode.INTERNAL,
                f"internal error (trace {call.trace_id or 'unknown'})",
                "INTERNAL",
                "vivified.core",
            )
        else:
            self._on_done(call, call.code or grpc.StatusCode.OK)


class DomainErrorLayer:
    """Innermost: runs the handler and maps domain errors to rich statuses."""

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        try:
            await proceed(call)
        except VivifiedError as exc:
            call.code = exc.code
            call.reason = exc.reason
            await abort_with(call.context, exc.code, exc.message, exc.reason, exc.domain, exc.metadata)
