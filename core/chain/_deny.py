"""Denial: one audit record, then an aborting status with reason and rule id."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import grpc
from vivified.core.chain._call import Call
from vivified.core.chain._status import abort_with


class AuditSink(Protocol):
    """Where the chain records calls; `record` returns once the record is committed."""

    async def record(self, call: Call, *, outcome: str) -> None: ...


_log = logging.getLogger("vivified.chain")


class Denier:
    """Shared by every layer that can refuse a call, so each denial writes
    exactly one audit record and returns the same rich error shape."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit
        self._late: set[asyncio.Task[None]] = set()

    async def deny(
        self, call: Call, code: grpc.StatusCode, message: str, *, reason: str, rule_id: str, domain: str
    ) -> None:
        call.decision = "deny"
        call.reason = reason
        call.rule_id = rule_id
        call.code = code
        await self._audit.record(call, outcome=code.name)
        call.audited = True
        await abort_with(call.context, code, message, reason, domain, {"rule_id": rule_id})

    async def cut_off(
        self, call: Call, code: grpc.StatusCode, message: str, *, reason: str, rule_id: str, domain: str
    ) -> None:
        """End a running stream at once and write its one record after: used when
        the audit log may sit on the very database that cannot be reached (the
        registry went stale), where waiting for the record would keep the access open."""
        call.decision = "deny"
        call.reason = reason
        call.rule_id = rule_id
        call.code = code
        task = asyncio.ensure_future(self._audit.record(call, outcome=code.name))
        self._late.add(task)
        task.add_done_callback(self._recorded)
        call.audited = True
        await abort_with(call.context, code, message, reason, domain, {"rule_id": rule_id})

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("audit record of a stream cut off while the registry was stale not written: %s", task.exception())
