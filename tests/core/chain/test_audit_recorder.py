"""`AuditRecorder.settle` is the one place a call's record is written: once,
however many layers settle it; not for a liveness call answered OK; again
only for a stream closure; and a failed write leaves the call unwritten so
the error boundary's fallback can still record it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from vivified.core.audit import AuditRecord
from vivified.core.chain import AuditRecorder, Call, MethodFacts, Outcome

pytestmark = pytest.mark.asyncio


class Sink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.fail = False

    async def append(self, record: AuditRecord) -> None:
        if self.fail:
            raise OSError("disk full")
        self.records.append(record)


def _call(facts: MethodFacts = MethodFacts(), request: Any = None) -> Call:
    return Call(
        method="/p.S/M",
        service="p.S",
        method_name="M",
        metadata={},
        context=None,  # type: ignore[arg-type]
        streaming=False,
        facts=facts,
        request=request,
    )


OK = Outcome("OK", "allow", "", "rule-a", grpc.StatusCode.OK)
DENY = Outcome("PERMISSION_DENIED", "deny", "POLICY_DENIED", "default-deny", grpc.StatusCode.PERMISSION_DENIED)


async def test_a_call_settled_twice_is_written_once() -> None:
    sink = Sink()
    recorder, call = AuditRecorder(sink), _call()
    await recorder.settle(call, OK)
    await recorder.settle(call, DENY)
    assert [(r.outcome, r.decision, r.rule_id) for r in sink.records] == [("OK", "allow", "rule-a")]
    assert recorder.written(call) and recorder.settled(call) == DENY


async def test_liveness_ok_is_not_written_but_its_failure_is() -> None:
    sink = Sink()
    recorder = AuditRecorder(sink)
    await recorder.settle(_call(MethodFacts(unaudited_when_ok=True)), OK)
    await recorder.settle(_call(MethodFacts(unaudited_when_ok=True)), DENY)
    assert [r.outcome for r in sink.records] == ["PERMISSION_DENIED"]


async def test_a_closure_is_a_record_of_its_own() -> None:
    sink = Sink()
    recorder, call = AuditRecorder(sink), _call()
    await recorder.settle(call, Outcome("STREAM_OPENED", "allow", "", "rule-a"))
    await recorder.record_closure(call, DENY)
    assert [r.outcome for r in sink.records] == ["STREAM_OPENED", "PERMISSION_DENIED"]


async def test_a_failed_write_leaves_the_call_unwritten() -> None:
    sink = Sink()
    recorder, call = AuditRecorder(sink), _call()
    sink.fail = True
    with pytest.raises(OSError):
        await recorder.settle(call, OK)
    assert not recorder.written(call) and recorder.settled(call) == OK
    sink.fail = False
    await recorder.settle(call, OK)
    assert len(sink.records) == 1


async def test_the_resource_comes_from_the_method_facts_then_the_annotation() -> None:
    sink = Sink()
    recorder = AuditRecorder(sink)
    named = _call(MethodFacts(resource=lambda request: f"plugin/{request}"), request="x")
    named.extra["resource"] = "user/u"
    annotated = _call()
    annotated.extra["resource"] = "user/u"
    await recorder.settle(named, OK)
    await recorder.settle(annotated, OK)
    await recorder.settle(_call(), OK)
    assert [r.resource for r in sink.records] == ["plugin/x", "user/u", "p.S"]
