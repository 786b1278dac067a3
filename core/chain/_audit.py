"""Audit: every call's outcome is written once, by the recorder, and an
allowed call is acknowledged only after its record commits.

`AuditRecorder.settle` is the one place that decides whether a call's record
is written: the audit layer settles an allowed call's outcome, the error
boundary settles denials and anything no inner layer settled, and a call
settled twice is written once. Which methods are audited at their end,
recorded when cancelled or left unaudited when OK, and which resource a
request names, are facts of the method (`Call.facts`, declared per binding
in `vivified.core.services`), not names tested here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import grpc
from opentelemetry import trace

from vivified.core.audit import AuditRecord
from vivified.core.chain._call import Call, Proceed, current_call
from vivified.core.chain._outcome import Outcome, Trail
from vivified.core.errors import VivifiedError

_log = logging.getLogger(__name__)


class AuditSink(Protocol):
    """Where records go; `append` returns once the record is committed (AuditLog)."""

    async def append(self, record: AuditRecord) -> Any: ...


def _resource(call: Call) -> str:
    """The object a call acts on: what its request names (per the method's
    facts), else what its handler annotated, else the service."""
    read = call.facts.resource
    named = read(call.request) if read is not None and call.request is not None else None
    return named or call.extra.get("resource", call.service)


def cancellation_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """A cancelled call's status: a client whose deadline fires resets the
    stream itself, often a moment before the server's copy of the deadline:
    count that as expiry."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0.1
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


class AuditRecorder:
    """Turns a Call and its Outcome into an AuditRecord and waits for it to be committed."""

    def __init__(self, log: AuditSink) -> None:
        self._log = log
        self._late: set[asyncio.Task[None]] = set()

    async def _write(self, call: Call, outcome: Outcome) -> None:
        await self._log.append(
            AuditRecord(
                actor=call.actor,
                action=call.method,
                resource=_resource(call),
                decision=outcome.decision,
                reason=outcome.reason,
                rule_id=outcome.rule_id,
                outcome=outcome.outcome,
                trace_id=call.trace_id,
                detail=dict(call.extra) or None,
            )
        )
        # On the call's server span (a no-op when it is not recorded): the record is durable.
        trace.get_current_span().add_event("vivified.audit.commit", {"vivified.audit.outcome": outcome.outcome})

    async def settle(self, call: Call, outcome: Outcome, *, write: bool = True) -> None:
        """Settle the call's outcome and write its one record, unless it was
        written already, `write` is False (a cancelled stream that moved no
        data), or the method is unaudited when OK and this is OK. Raises
        whatever made the write fail; the call is then not recorded."""
        trail = call.trail
        if trail is None:
            trail = call.trail = Trail(outcome)
        else:
            trail.settled = outcome
        if trail.written or not write:
            return
        if outcome.code == grpc.StatusCode.OK and call.facts.unaudited_when_ok:
            trail.written = True
            return
        await self._write(call, outcome)
        trail.written = True

    def settle_later(self, call: Call, outcome: Outcome) -> None:
        """Settle now and write the record after the caller has its status (see `Denied.record_after`)."""
        if call.trail is None:
            call.trail = Trail(outcome, written=True)
        else:
            call.trail.settled, call.trail.written = outcome, True
        task = asyncio.ensure_future(self._write(call, outcome))
        self._late.add(task)
        task.add_done_callback(self._recorded_late)

    def _recorded_late(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error(
                "audit record of a stream cut off while the registry was stale not written: %s", task.exception()
            )

    async def record_closure(self, call: Call, outcome: Outcome) -> None:
        """An open stream the core ends: the closure is a decision of its own
        and gets its own record, whatever was written when it opened."""
        if call.trail is None:
            call.trail = Trail(outcome)
        else:
            call.trail.settled = outcome
        await self._write(call, outcome)
        call.trail.written = True

    @staticmethod
    def settled(call: Call) -> Outcome | None:
        return call.trail.settled if call.trail is not None else None

    @staticmethod
    def written(call: Call) -> bool:
        return call.trail is not None and call.trail.written

    async def record_stream_open(self) -> None:
        """Record the current streaming call as opened, for handlers of streams
        audited at their end that stay open long after their checks passed.
        This is a record of its own; the call's outcome is still written at its end."""
        call = current_call()
        if call is None:
            raise RuntimeError("record_stream_open outside a call")
        await self._write(call, Outcome("STREAM_OPENED", "allow", "", call.rule_id))


class AuditLayer:
    """Settles every allowed call's outcome with the recorder: a unary call
    when it has its outcome (before the response or error status leaves), a
    stream when it opens, or at its end when its method is audited at the end.
    Domain errors pass through to the error boundary, which sends them."""

    def __init__(self, recorder: AuditRecorder) -> None:
        self._recorder = recorder

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        # Only a call the policy allowed reaches this layer.
        rule = call.rule_id
        if call.streaming and not call.facts.audit_at_end:
            await self._recorder.settle(call, Outcome("STREAM_OPENED", "allow", "", rule))
            await proceed(call)
            return
        try:
            await proceed(call)
        except asyncio.CancelledError:
            # grpc.aio cancels the handler when the caller cancels or its deadline
            # passes. The call may have had effects (a forwarded operator-lane call),
            # so it is recorded all the same; shielded, as this task is being cancelled.
            # Of the streams audited at their end, those that moved data are recorded.
            code = cancellation_code(call.context)
            reason = "DEADLINE_EXCEEDED" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "CANCELLED_BY_CALLER"
            outcome = Outcome(code.name, "allow", reason, rule, code)
            write = not call.streaming or call.facts.record_when_cancelled
            try:
                await asyncio.shield(self._recorder.settle(call, outcome, write=write))
            except Exception:  # noqa: BLE001 - the call is over either way; say so in the log
                _log.exception("audit record of cancelled call %s (trace %s) not written", call.method, call.trace_id)
            raise
        except VivifiedError as exc:
            # A handler-level decision (e.g. the operator lane's per-target
            # policy) that denied the call is recorded as a denial with its rule.
            denial = exc.is_denial
            await self._recorder.settle(
                call,
                Outcome(
                    exc.code.name,
                    "deny" if denial else "allow",
                    exc.reason,
                    exc.metadata.get("rule_id", rule) if denial else rule,
                    exc.code,
                ),
            )
            raise
        except grpc.aio.AbortError:
            # The handler aborted by itself, so its status has already been sent.
            code = call.context.code() or grpc.StatusCode.UNKNOWN
            await self._recorder.settle(call, Outcome(code.name, "allow", "", rule, code))
            raise
        except Exception:
            await self._recorder.settle(call, Outcome("INTERNAL", "allow", "", rule, grpc.StatusCode.INTERNAL))
            raise
        await self._recorder.settle(call, Outcome("OK", "allow", "", rule, grpc.StatusCode.OK))
