"""A caller-only plugin (it serves no contract) needs no invented contract: its
manifest lists `contracts: []` and provides nothing; a real core approves it
with `vivified plugins approve`, registers it, initialises it and routes its
declared operator-lane calls. Listing operations under `provides` without the
contracts they belong to is still refused."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
import yaml

from support.clients import audit_rows, plugin_channel
from support.lane import RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, run_cli
from support.raw_plugin import initialised_plugin
from support.waiting import until
from vivified.core.errors import InvalidArgument
from vivified.core.manifest import load_manifest_file, validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.sdk import target_metadata
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


def _caller_only(directory: pathlib.Path, **fields: object) -> pathlib.Path:
    data = {
        "id": "caller-only",
        "name": "Caller only",
        "version": "0.1.0",
        "contracts": [],
        "traits": [],
        "calls": [{"plugin_id": "served", "method": RETRIEVE_METHOD}],
        **fields,
    }
    path = directory / "caller-only.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_a_caller_only_manifest_is_approved_registered_and_its_calls_routed(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    store = RecordingStore()
    served = await started_plugin(core, write_manifest(tmp_path, "served", provides=[RETRIEVE_METHOD]), [store])
    try:
        path = _caller_only(tmp_path)
        approved = await asyncio.to_thread(run_cli, core, "plugins", "approve", str(path))
        assert approved.returncode == 0, approved.stderr
        manifest = load_manifest_file(path)
        assert list(manifest.contracts) == [] and list(manifest.provides) == []
        async with initialised_plugin(
            core, "caller-only", contracts=[], traits=[], calls=[{"plugin_id": "served", "method": RETRIEVE_METHOD}]
        ) as (plugin, init):
            await until(lambda: init.inits > 0, 20, "the core's Init of the caller-only plugin")
            async with plugin_channel(core, plugin) as channel:
                reply = await storage_pb2_grpc.StoragePluginServiceStub(channel).RetrieveObject(
                    storage_pb2.RetrieveObjectRequest(object_key="k"), metadata=target_metadata("served"), timeout=10
                )
        assert reply.object.object_key == "k" and store.calls == ["RetrieveObject"]
        rows = [r for r in audit_rows(core, actor="plugin:caller-only") if r.action == f"/{RETRIEVE_METHOD}"]
        assert [(r.decision, r.outcome) for r in rows] == [("allow", "OK")]
    finally:
        await served.stop("test over")


async def test_provides_without_contracts_is_refused_by_the_core(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    path = _caller_only(tmp_path, provides=[RETRIEVE_METHOD])
    refused = await asyncio.to_thread(run_cli, core, "plugins", "approve", str(path))
    assert refused.returncode != 0
    assert "MANIFEST_INVALID" in refused.stderr and "provides must list the contracts" in refused.stderr
    with pytest.raises(InvalidArgument) as local:
        validate_manifest(load_manifest_file(path), TraitCatalogue.load_default())
    assert local.value.reason == "MANIFEST_INVALID"
    denied = [
        r
        for r in audit_rows(core, actor="operator:admin")
        if r.action == "/vivified.admin.v1.PluginAdminService/ApprovePlugin" and r.reason == "MANIFEST_INVALID"
    ]
    assert len(denied) == 1
