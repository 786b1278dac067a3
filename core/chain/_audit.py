"""Audit layer: an allowed call is acknowledged only after its record commits."""

from __future__ import annotations

import asyncio
import logging

import grpc
from opentelemetry import trace
from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.chain._call import Call, Proceed, current_call
from vivified.core.errors import VivifiedError

_log = logging.getLogger(__name__)


def _resource(call: Call) -> str:
    """The object a call acts on: a plugin id when the request names one."""
    request = call.request
    plugin_id = getattr(request, "plugin_id", None)
    if isinstance(plugin_id, str) and plugin_id:
        return f"plugin/{plugin_id}"
    manifest = getattr(request, "manifest", None)
    if manifest is not None and getattr(manifest, "id", None):
        return f"plugin/{manifest.id}"
    return call.extra.get("resource", call.service)


class AuditRecorder:
    """Turns a Call into an AuditRecord and waits for it to be committed."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def record(self, call: Call, *, outcome: str) -> None:
        await self._log.append(
            AuditRecord(
                actor=call.actor,
                action=call.method,
                resource=_resource(call),
                decision=call.decision or "deny",
                reason=call.reason,
                rule_id=call.rule_id,
                outcome=outcome,
                trace_id=call.trace_id,
                detail=dict(call.extra) or None,
            )
        )
        # On the call's server span (a no-op when it is not recorded): the record is durable.
        trace.get_current_span().add_event("vivified.audit.commit", {"vivified.audit.outcome": outcome})

    async def record_stream_open(self) -> None:
        """Record the current streaming call as opened, for handlers of
        AUDIT_AT_END streams that stay open long after their checks passed."""
        call = current_call()
        if call is None:
            raise RuntimeError("record_stream_open outside a call")
        await self.record(call, outcome="STREAM_OPENED")


# Streams recorded at their end, like unary calls, because their handler decides
# (and annotates) only after reading the request: the egress streams (a tunnel's
# one record carries its bytes each way and duration), the
# streamed publish (each event gets its own record too), and Subscribe, whose
# handler also records the open once it has checked the subscription
# (`AuditRecorder.record_stream_open`).
AUDIT_AT_END = frozenset(
    {
        "/vivified.egress.v1.EgressProxyService/StreamFetch",
        "/vivified.egress.v1.EgressProxyService/Connect",
        "/vivified.events.v1.EventBusService/PublishStream",
        "/vivified.events.v1.EventBusService/Subscribe",
        # the object store names the object (and checks who may see it) only
        # after reading the request: a put's header, a get's name
        "/vivified.storage.v1.ObjectStoreService/PutObject",
        "/vivified.storage.v1.ObjectStoreService/GetObject",
    }
)

# Egress streams carry traffic for as long as they are open: one the caller
# cancels still gets its one record (with the bytes moved so far).
RECORD_WHEN_CANCELLED = frozenset(
    {
        "/vivified.egress.v1.EgressProxyService/StreamFetch",
        "/vivified.egress.v1.EgressProxyService/Connect",
    }
)


# Liveness calls answered OK are counted in metrics (`vivified_rpc_calls`,
# `vivified_plugin_heartbeats`), not audited one by one: a plugin heartbeats
# every few seconds. The registry audits liveness as transitions instead
# (`plugin.healthy`, `plugin.unhealthy`, `plugin.recovered`). A refused or failed
# heartbeat or health check is still audited, each one.
UNAUDITED_WHEN_OK = frozenset(
    {
        "/vivified.registry.v1.PluginRegistryService/Heartbeat",
        "/grpc.health.v1.Health/Check",
    }
)


class AuditLayer:
    """Records every allowed call exactly once: a unary call when it has its
    outcome (before the response or error status leaves), a stream when it
    opens; except liveness calls answered OK (`UNAUDITED_WHEN_OK`). Domain
    errors pass through to the error boundary, which sends them."""

    def __init__(self, recorder: AuditRecorder) -> None:
        self._recorder = recorder

    async def __call__(self, call: Call, proceed: Proceed) -> None:
        if call.streaming and call.method not in AUDIT_AT_END:
            await self._recorder.record(call, outcome="STREAM_OPENED")
            call.audited = True
            await proceed(call)
            return
        try:
            await proceed(call)
        except asyncio.CancelledError:
            # grpc.aio cancels the handler when the caller cancels or its deadline
            # passes. The call may have had effects (a forwarded operator-lane call),
            # so it is recorded all the same; shielded, as this task is being cancelled.
            # A client whose deadline fires resets the stream itself, often a
            # moment before the server's copy of the deadline: count that as expiry.
            remaining = call.context.time_remaining()
            expired = remaining is not None and remaining <= 0.1
            call.reason = call.reason or ("DEADLINE_EXCEEDED" if expired else "CANCELLED_BY_CALLER")
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            # Streams were recorded when they opened, except those audited at their
            # end; of these, the ones that moved data are recorded when cancelled.
            if (not call.streaming or call.method in RECORD_WHEN_CANCELLED) and not call.audited:
                try:
                    await asyncio.shield(self._finish(call, code))
                except Exception:  # noqa: BLE001 - the call is over either way; say so in the log
                    _log.exception("audit record of cancelled call %s (trace %s) not written", call.method, call.trace_id)
            call.code = code
            raise
        except VivifiedError as exc:
            call.reason = exc.reason
            if exc.is_denial:
                # A handler-level decision (e.g. the operator lane's per-target
                # policy) denied the call: record it as a denial with its rule.
                call.decision = "deny"
                call.rule_id = exc.metadata.get("rule_id", call.rule_id)
            await self._finish(call, exc.code)
            raise
        except grpc.aio.AbortError:
            # The handler aborted by itself, so its status has already been sent.
            await self._finish(call, call.context.code() or grpc.StatusCode.UNKNOWN)
            raise
        except Exception:
            await self._finish(call, grpc.StatusCode.INTERNAL)
            raise
        await self._finish(call, grpc.StatusCode.OK)

    async def _finish(self, call: Call, code: grpc.StatusCode) -> None:
        call.code = code
        if not (code == grpc.StatusCode.OK and call.method in UNAUDITED_WHEN_OK):
            await self._recorder.record(call, outcome=code.name)
        call.audited = True
