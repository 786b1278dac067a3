"""The chain's error edge.

`ErrorBoundaryLayer` is outermost. It turns what the layers raised into the
status the caller gets: a `Denied` from a layer is recorded (through the
recorder's `settle`, so once) and then sent; a `VivifiedError` from a handler
gets its canonical code with a `google.rpc.ErrorInfo` detail; any unexpected
exception becomes a sanitised INTERNAL. A call no inner layer settled is
settled here. The status leaves only after the audit record is committed:
grpc.aio's `abort` transmits the status at once, so aborting deeper would
acknowledge the call before its audit record is committed.

A call whose audit record cannot be written fails closed with INTERNAL and
reason AUDIT_UNAVAILABLE; the database's error never reaches the caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from vivified.core.chain._audit import AuditRecorder
from vivified.core.chain._call import Call, Proceed
from vivified.core.chain._outcome import Denied, Outcome
from vivified.core.chain._status import abort_with
from vivified.core.errors import VivifiedError

_log = logging.getLogger(__name__)


class ErrorBoundaryLayer:
    """Outermost: nothing unexpected leaks to the caller; every call is counted."""

    def __init__(self, recorder: AuditRecorder, on_done: Callable[[Call, grpc.StatusCode], None]) -> None:
        self._recorder = recorder
        self._on_done = on_done

    def _ended(self, call: Call, default: grpc.StatusCode) -> grpc.StatusCode:
        settled = self._recorder.settled(call)
        return settled.code if settled is not None and settled.code is not None else default

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        try:
            await proceed(call)
        except Denied as denial:
            await self._deny(call, denial)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            self._on_done(call, self._ended(call, grpc.StatusCode.CANCELLED))
            raise
        except VivifiedError as exc:
            if not self._recorder.written(call):
                settled = self._recorder.settled(call)
                outcome = Outcome(
                    exc.code.name,
                    settled.decision if settled is not None else "deny",
                    exc.reason,
                    settled.rule_id if settled is not None else call.rule_id,
                    exc.code,
                )
                if not await self._recorded(call, outcome):
                    await self._refuse_unaudited(call)
                    return
            self._on_done(call, exc.code)
            await abort_with(call.context, exc.code, exc.message, exc.reason, exc.domain, exc.metadata)
        except Exception:  # noqa: BLE001 - the boundary turns anything unexpected into an audited INTERNAL
            _log.exception("unexpected error in %s (trace %s)", call.method, call.trace_id)
            await self._internal(call)
        else:
            self._on_done(call, self._ended(call, grpc.StatusCode.OK))

    async def _deny(self, call: Call, denial: Denied) -> None:
        if denial.record_after:
            self._recorder.settle_later(call, denial.outcome)
        else:
            try:
                if denial.closure:
                    await self._recorder.record_closure(call, denial.outcome)
                else:
                    await self._recorder.settle(call, denial.outcome)
            except asyncio.CancelledError:
                self._on_done(call, denial.code)  # the caller left while its denial was being recorded
                raise
            except Exception:  # noqa: BLE001 - an unrecorded denial is answered as an unexpected error
                _log.exception("audit record of the denial of %s (trace %s) failed", call.method, call.trace_id)
                await self._internal(call)
                return
        self._on_done(call, denial.code)
        await abort_with(
            call.context, denial.code, denial.message, denial.reason, denial.domain, {"rule_id": denial.rule_id}
        )

    async def _internal(self, call: Call) -> None:
        if not self._recorder.written(call):
            settled = self._recorder.settled(call)
            outcome = Outcome(
                "INTERNAL",
                settled.decision if settled is not None else "deny",
                (settled.reason if settled is not None else "") or "INTERNAL",
                settled.rule_id if settled is not None else call.rule_id,
                grpc.StatusCode.INTERNAL,
            )
            if not await self._recorded(call, outcome):
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

    async def _recorded(self, call: Call, outcome: Outcome) -> bool:
        try:
            await self._recorder.settle(call, outcome)
        except Exception:  # noqa: BLE001 - an unrecordable call is refused, never answered as it was
            _log.critical("audit record of %s (trace %s) cannot be written", call.method, call.trace_id, exc_info=True)
            return False
        return True

    async def _refuse_unaudited(self, call: Call) -> None:
        self._on_done(call, grpc.StatusCode.INTERNAL)
        await abort_with(
            call.context,
            grpc.StatusCode.INTERNAL,
            f"the audit log cannot record this call (trace {call.trace_id or 'unknown'})",
            "AUDIT_UNAVAILABLE",
            "vivified.core",
        )
