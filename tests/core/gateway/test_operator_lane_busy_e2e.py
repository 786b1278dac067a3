"""Operator-lane calls to a busy target through a real core: every call the
core refuses carries its code and reason, and every call it handled has one
audit record. Calls queued for a slot used to wait into their deadline, be
cancelled by grpc.aio and end CANCELLED, unaudited and without a reason."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import urllib.request

import grpc
import pytest

from support.clients import audit_rows
from support.lane import RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import core_running
from vivified.sdk import VivifiedSDKError
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]


async def test_calls_queued_for_a_busy_target_are_refused_with_a_reason_before_their_deadline(
    tmp_path: pathlib.Path,
) -> None:
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--call-rate", "5000") as core:
        caller = await started_plugin(
            core,
            write_manifest(tmp_path, "busy-caller", calls=[{"plugin_id": "busy", "method": RETRIEVE_METHOD}]),
            [RecordingStore()],
        )
        target = await started_plugin(
            core, write_manifest(tmp_path, "busy", provides=[RETRIEVE_METHOD]), [RecordingStore(delay=3)]
        )
        try:

            async def one() -> tuple[grpc.StatusCode, str]:
                try:
                    await caller.call("busy", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=2)
                except VivifiedSDKError as err:
                    return err.code, err.reason
                return grpc.StatusCode.OK, ""

            # 64 in flight (the per-target limit), 64 queued, 72 refused at once.
            outcomes = collections.Counter(await asyncio.gather(*(one() for _ in range(200))))
        finally:
            await caller.stop("test over")
            await target.stop("test over")
        busy = outcomes[(grpc.StatusCode.RESOURCE_EXHAUSTED, "TARGET_BUSY")]
        # The queued calls are refused while their caller still listens (a few
        # may lose that race on a loaded machine and see their own deadline).
        assert busy >= 72 + 32, outcomes
        assert set(outcomes) <= {
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "TARGET_BUSY"),
            (grpc.StatusCode.DEADLINE_EXCEEDED, ""),
        }, outcomes

        rows = [r for r in audit_rows(core, actor="plugin:busy-caller") if r.action == f"/{RETRIEVE_METHOD}"]
        assert len(rows) == 200  # one record per call, the cancelled ones included
        recorded = collections.Counter((r.outcome, r.reason) for r in rows)
        assert set(recorded) <= {("RESOURCE_EXHAUSTED", "TARGET_BUSY"), ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")}
        assert recorded[("RESOURCE_EXHAUSTED", "TARGET_BUSY")] >= busy
        metrics = urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=5).read().decode()
        assert not [line for line in metrics.splitlines() if 'code="CANCELLED"' in line and "RetrieveObject" in line]
