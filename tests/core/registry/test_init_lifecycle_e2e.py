"""Init before anything is routed (catalogue M1), on a real core with real SDK
plugins over mTLS: a plugin whose Init timed out stays unhealthy although its
heartbeats go on, operator-lane calls to it are refused (UNAVAILABLE, audited)
and the core retries Init with backoff until it succeeds."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from support.clients import approve, audit_rows
from support.lane import RETRIEVE_METHOD, RecordingStore, plugin_settings, plugin_state, started_plugin, write_manifest
from support.processes import CoreProcess, core_running, run_cli
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.lifecycle.v1.lifecycle_pb2 import InitRequest
from vivified.sdk import PluginRuntime, UnavailableError, load_manifest
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """Heartbeats every second; each Init attempt gives up after one second."""
    data_dir = tmp_path_factory.mktemp("init-core") / "data"
    with core_running(data_dir, "--heartbeat-interval", "1", "--init-timeout", "1") as running:
        yield running


class HangingInit:
    """An on_init hook that hangs (so the core's Init times out) until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.released = asyncio.Event()

    async def __call__(self, request: InitRequest) -> None:
        self.calls += 1
        await self.released.wait()


def _transitions(core: CoreProcess, plugin_id: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (r.action, json.loads(r.detail or "{}"))
        for r in audit_rows(core, actor="core:core", resource=f"plugin/{plugin_id}")
    ]


async def test_m1_a_plugin_whose_init_timed_out_is_routed_nothing_until_a_retried_init_succeeds(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    store = RecordingStore()
    manifest_path = write_manifest(tmp_path, "slow-init", provides=[RETRIEVE_METHOD])
    manifest = load_manifest(manifest_path)
    hook = HangingInit()
    approval = await approve(core, manifest, replace=True)
    slow = PluginRuntime([store], plugin_settings(core, manifest_path, approval.join_token), on_init=hook)
    caller = await started_plugin(
        core,
        write_manifest(tmp_path, "m1-caller", calls=[{"plugin_id": "slow-init", "method": RETRIEVE_METHOD}]),
        [RecordingStore()],
    )
    await slow.start()
    try:
        await until(lambda: _transitions(core, "slow-init"), 20, "the timed-out Init recorded")
        first = _transitions(core, "slow-init")
        assert [(a, d["to"]) for a, d in first] == [("plugin.unhealthy", "init_failed")]
        assert "retried" in first[0][1]["why"]
        # Heartbeats go on (every second) and are accepted; the plugin stays unhealthy.
        await asyncio.sleep(3.5)
        state = await plugin_state(core, "slow-init")
        assert state is not None and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
        assert state.health == admin_pb.PLUGIN_HEALTH_UNHEALTHY
        assert state.last_heartbeat_time.seconds > 0
        assert len(_transitions(core, "slow-init")) == 1  # not "recovered" by heartbeats
        assert hook.calls >= 2, "the core did not retry Init"

        # Routed nothing: an operator-lane call is refused before the plugin sees it, audited once.
        with pytest.raises(UnavailableError) as refused:
            await caller.call("slow-init", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=5)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert refused.value.reason == "TARGET_UNAVAILABLE"
        assert "has not completed Init" in refused.value.message
        assert store.calls == []
        denied = [r for r in audit_rows(core, actor="plugin:m1-caller") if r.action == f"/{RETRIEVE_METHOD}"]
        # Policy allowed the call; the core refused to route it: one record saying so.
        assert [(r.decision, r.reason, r.outcome) for r in denied] == [("allow", "TARGET_UNAVAILABLE", "UNAVAILABLE")]

        # Once Init can succeed, a retry (with backoff, at most 1 + 2 + 4 s apart so far) makes it healthy.
        hook.released.set()

        async def healthy() -> bool:
            state = await plugin_state(core, "slow-init")
            return state is not None and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY

        await until(healthy, 20, "the retried Init to succeed")
        assert [(a, d["from"], d["to"]) for a, d in _transitions(core, "slow-init")] == [
            ("plugin.unhealthy", "unknown", "init_failed"),
            ("plugin.healthy", "init_failed", "healthy"),
        ]
        reply = await caller.call("slow-init", storage_pb2.RetrieveObjectRequest(object_key="k"), timeout=10)
        assert reply.object.object_key == "k" and store.calls == ["RetrieveObject"]
    finally:
        hook.released.set()
        await slow.stop("test over")
        await caller.stop("test over")


async def test_a_revoked_plugin_is_not_listed_as_healthy(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    runtime = await started_plugin(core, write_manifest(tmp_path, "to-revoke"), [RecordingStore()])

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, core, *args)  # the plugin heartbeats on this loop meanwhile

    try:
        before = await cli("plugins", "list")
        assert before.returncode == 0, before.stderr
        assert _row(before.stdout, "to-revoke")[1:3] == ["active", "healthy"]
        revoked = await cli("plugins", "revoke", "to-revoke", "--reason", "test")
        assert revoked.returncode == 0, revoked.stderr
        listed = await cli("plugins", "list")
        assert _row(listed.stdout, "to-revoke")[1:3] == ["revoked", "unspecified"]
        as_json = json.loads((await cli("plugins", "list", "--json")).stdout)
        entry = next(p for p in as_json["plugins"] if p["plugin_id"] == "to-revoke")
        assert entry["status"] == "PLUGIN_STATUS_REVOKED" and "health" not in entry  # not observed any more
    finally:
        await runtime.stop("test over")


def _row(table: str, plugin_id: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.startswith(plugin_id + " "))
