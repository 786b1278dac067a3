"""A plugin must serve every contract its manifest lists (issue 9 §4): after
Init the core asks the plugin's `grpc.health.v1` for each listed contract; a
plugin that does not serve one is refused with CONTRACT_NOT_SERVED naming it,
in one audit record, is routed nothing, is not sent Init again, and is asked to
shut down with that reason. Real core process, real mTLS; the plugin is a raw
gRPC server (not the SDK, which refuses such a manifest before registering)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterator

import grpc
import pytest

from support.clients import audit_rows
from support.lane import RETRIEVE_METHOD, RecordingStore, plugin_state, started_plugin, write_manifest
from support.processes import CoreProcess, core_running
from support.raw_plugin import initialised_plugin
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.sdk import UnavailableError
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
COMMUNICATION = "vivified.communication.v1.CommunicationPluginService"
STORAGE = "vivified.storage.v1.StoragePluginService"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("served-core") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--init-timeout", "1") as running:
        yield running


def _lifecycle_rows(core: CoreProcess, plugin_id: str) -> list[object]:
    return audit_rows(core, actor="core:core", resource=f"plugin/{plugin_id}")


async def test_a_plugin_not_serving_a_listed_contract_is_refused_once_and_routed_nothing(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    caller = await started_plugin(
        core,
        write_manifest(tmp_path, "served-caller", calls=[{"plugin_id": "half-served", "method": RETRIEVE_METHOD}]),
        [RecordingStore()],
    )
    try:
        async with initialised_plugin(
            core,
            "half-served",
            contracts=[COMMUNICATION, STORAGE],
            traits=["communication_plugin", "storage_plugin"],
            provides=[RETRIEVE_METHOD],
            unserved=frozenset({STORAGE}),
        ) as (_plugin, lifecycle):
            await until(lambda: _lifecycle_rows(core, "half-served"), 20, "the refusal recorded")
            await until(lambda: lifecycle.shutdowns, 10, "the core's Shutdown with the reason")
            assert lifecycle.shutdowns[0].startswith("CONTRACT_NOT_SERVED: ") and STORAGE in lifecycle.shutdowns[0]
            # Init is not retried for this registration (a retry would come within 1 s).
            await asyncio.sleep(2.5)
            assert lifecycle.inits == 1
            [row] = _lifecycle_rows(core, "half-served")
            assert (row.action, row.decision, row.reason, row.outcome) == (  # type: ignore[attr-defined]
                "plugin.refused",
                "deny",
                "CONTRACT_NOT_SERVED",
                "FAILED_PRECONDITION",
            )
            detail = json.loads(row.detail)  # type: ignore[attr-defined]
            assert detail["to"] == "init_failed" and STORAGE in detail["why"] and COMMUNICATION not in detail["why"]
            state = await plugin_state(core, "half-served")
            assert state is not None and state.health == admin_pb.PLUGIN_HEALTH_UNHEALTHY
            # Unrouted: an operator-lane call to it is refused before it sees anything, audited once.
            with pytest.raises(UnavailableError) as refused:
                await caller.call("half-served", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=5)
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert refused.value.reason == "TARGET_UNAVAILABLE"
            calls = [r for r in audit_rows(core, actor="plugin:served-caller") if r.action == f"/{RETRIEVE_METHOD}"]
            assert [(r.reason, r.outcome) for r in calls] == [("TARGET_UNAVAILABLE", "UNAVAILABLE")]
    finally:
        await caller.stop("test over")


async def test_a_plugin_serving_every_listed_contract_becomes_healthy(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    async with initialised_plugin(
        core,
        "all-served",
        contracts=[COMMUNICATION, STORAGE],
        traits=["communication_plugin", "storage_plugin"],
    ) as (_plugin, lifecycle):

        async def healthy() -> bool:
            state = await plugin_state(core, "all-served")
            return state is not None and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY

        await until(healthy, 20, "all-served to become healthy")
        assert [r.action for r in _lifecycle_rows(core, "all-served")] == ["plugin.healthy"]  # type: ignore[attr-defined]
        assert lifecycle.shutdowns == []
