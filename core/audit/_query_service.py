"""AuditQueryService: list, verify and watch the audit log through a running core.

Who may call is policy's decision (operators; users with `audit_viewer`); the
chain audits every call, so each query leaves its own record. A watch is
audited once, when its filter is checked and the feed opened (`record_open`),
never per record it sends; a watcher cut off for reading too slowly gets a
record of that closure too."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp

from vivified.admin.v1 import audit_query_pb2 as pb
from vivified.admin.v1 import audit_query_pb2_grpc
from vivified.core.audit._feed import AuditFeed, WatcherTooSlow, WatchFilter
from vivified.core.audit._query import AuditFilter, query
from vivified.core.audit._record import DECISIONS, StoredRecord
from vivified.core.audit._verify import verify
from vivified.core.errors import InvalidArgument, ResourceExhausted

_DOMAIN = "vivified.audit"
_DEFAULT_PAGE, _MAX_PAGE = 100, 1000

Context = grpc.aio.ServicerContext[Any, Any]


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_REQUEST", domain=_DOMAIN)


_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _time(stamp: Timestamp, present: bool) -> dt.datetime | None:
    return stamp.ToDatetime(tzinfo=dt.UTC) if present else None


def _filter(request: pb.ListAuditRecordsRequest) -> tuple[AuditFilter, int]:
    if request.decision and request.decision not in DECISIONS:
        raise _invalid("decision must be 'allow', 'deny' or empty")
    if not 0 <= request.page_size <= _MAX_PAGE:
        raise _invalid(f"page_size must be between 0 and {_MAX_PAGE}")
    token = request.page_token
    if token and not (token.isdigit() and len(token) <= 19):
        raise _invalid("page_token is not one this service returned")
    start = _time(request.start_time, request.HasField("start_time"))
    end = _time(request.end_time, request.HasField("end_time"))
    if start is not None and end is not None and end <= start:
        raise _invalid("end_time must be after start_time")
    if request.trace_id and not _TRACE_ID.fullmatch(request.trace_id):
        raise _invalid("trace_id must be 32 lowercase hex digits")
    where = AuditFilter(
        trace_id=request.trace_id,
        actor=request.actor[:512],
        action=request.action[:512],
        decision=request.decision,
        start=start,
        end=end,
        before_seq=int(token) if token else None,
    )
    return where, request.page_size or _DEFAULT_PAGE


def _entry(record: StoredRecord) -> pb.AuditRecordEntry:
    entry = pb.AuditRecordEntry(
        seq=record.seq,
        actor=record.actor,
        action=record.action,
        resource=record.resource,
        decision=record.decision,
        reason=record.reason,
        rule_id=record.rule_id,
        outcome=record.outcome,
        trace_id=record.trace_id,
        detail_json=record.detail or "",
        hash=record.hash,
    )
    entry.record_time.FromDatetime(record.time)
    return entry


class AuditQueryService(audit_query_pb2_grpc.AuditQueryServiceServicer):
    """Reads the audit table the core writes, and verifies it with the
    checkpoints in `audit_dir`."""

    def __init__(
        self,
        engine: sa.Engine,
        audit_dir: Path,
        feed: AuditFeed,
        record_open: Callable[[], Awaitable[None]],
    ) -> None:
        self._engine = engine
        self._audit_dir = audit_dir
        self._feed = feed
        self._record_open = record_open

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        where, size = _filter(request)
        # One extra row says whether another page exists.
        records = await asyncio.to_thread(query, self._engine, where, size + 1)
        more = len(records) > size
        records = records[:size]
        return pb.ListAuditRecordsResponse(
            records=[_entry(r) for r in records], next_page_token=str(records[-1].seq) if more else ""
        )

    async def VerifyAuditLog(self, request: pb.VerifyAuditLogRequest, context: Context) -> pb.VerifyAuditLogResponse:
        result = await asyncio.to_thread(
            verify, self._engine, self._audit_dir / "checkpoints.jsonl", self._audit_dir / "checkpoint.key.pub"
        )
        return pb.VerifyAuditLogResponse(
            intact=result.ok, record_count=result.count, first_bad_seq=result.first_bad_seq or 0, problem=result.problem
        )

    async def WatchAuditRecords(
        self, request: pb.WatchAuditRecordsRequest, context: Context
    ) -> AsyncIterator[pb.WatchAuditRecordsResponse]:
        if request.decision and request.decision not in DECISIONS:
            raise _invalid("decision must be 'allow', 'deny' or empty")
        where = WatchFilter(
            decision=request.decision,
            outcome=request.outcome[:64],
            action_prefix=request.action_prefix[:512],
            actor=request.actor[:512],
        )
        async with self._feed.watch(where) as watcher:
            # Recorded once the feed is open: the watcher sees its own record first.
            await self._record_open()
            # Headers now, not with the first matching record: a client (and Envoy, which answers
            # HTTP only once it has them) knows the feed is open even while nothing matches.
            await context.send_initial_metadata(())
            while True:
                try:
                    record = await watcher.next()
                except WatcherTooSlow as exc:
                    raise ResourceExhausted(
                        f"this watcher read too slowly and was cut off ({exc}); subscribe again",
                        reason="SUBSCRIBER_TOO_SLOW",
                        domain=_DOMAIN,
                    ) from None
                yield pb.WatchAuditRecordsResponse(record=_entry(record))
