"""The chain's error edge.

`ErrorBoundaryLayer` is outermost. It maps a `VivifiedError` raised by a
handler to its canonical code with a `google.rpc.ErrorInfo` detail, and turns
any unexpected exception into a sanitised INTERNAL, auditing it when no inner
layer did. It sends the status only after the audit layer has recorded the
outcome: grpc.aio's `abort` transmits the status at once, so aborting deeper
would acknowledge the call before its audit record is committed.

A call whose audit record cannot be written fails closed with INTERNAL and
reason AUDIT_UNAVAILABLE; the database's error never reaches the caller."""

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
        except VivifiedError as exc:
            call.code, call.reason = exc.code, exc.reason
            if not call.audited and not await self._recorded(call, exc.code.name):
                await self._refuse_unaudited(call)
                return
            self._on_done(call, exc.code)
            await abort_with(call.context, exc.code, exc.message, exc.reason, exc.domain, exc.metadata)
        except Exception:  # noqa: BLE001 - the boundary turns anything unexpected into an audited INTERNAL
            _log.exception("unexpected error in %s (trace %s)", call.method, call.trace_id)
            call.code = grpc.StatusCode.INTERNAL
            call.reason = call.reason or "INTERNAL"
            if not call.audited and not await self._recorded(call, "INTERNAL"):
                await self._refuse_unaudited(call)
                return
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

    async def _recorded(self, call: Call, outcome: str) -> bool:
        try:
            await self._audit.record(call, outcome=outcome)
        except Exception:  # noqa: BLE001 - an unrecordable call is refused, never answered as it was
            _log.critical("audit record of %s (trace %s) cannot be written", call.method, call.trace_id, exc_info=True)
            return False
        call.audited = True
        return True

    async def _refuse_unaudited(self, call: Call) -> None:
        call.code, call.reason = grpc.StatusCode.INTERNAL, "AUDIT_UNAVAILABLE"
        self._on_done(call, grpc.StatusCode.INTERNAL)
        await abort_with(
            call.context,
            grpc.StatusCode.INTERNAL,
            f"the audit log cannot record this call (trace {call.trace_id or 'unknown'})",
            "AUDIT_UNAVAILABLE",
            "vivified.core",
        )
