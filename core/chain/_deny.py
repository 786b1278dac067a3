"""Denial: one audit record, then an aborting status with reason and rule id."""

from __future__ import annotations

from typing import Protocol

import grpc
from vivified.core.chain._call import Call
from vivified.core.chain._status import abort_with


class AuditSink(Protocol):
    """Where the chain records calls; `record` returns once the record is committed."""

    async def record(self, call: Call, *, outcome: str) -> None: ...


class Denier:
    """Shared by every layer that can refuse a call, so each denial writes
    exactly one audit record and returns the same rich error shape."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit

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
