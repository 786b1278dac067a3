"""Plugins for operator-lane tests: manifests written on the fly, a recording
storage plugin whose behaviour a test controls, and runtimes started against
a real core."""

from __future__ import annotations

import asyncio
import pathlib
from dataclasses import dataclass, field
from typing import Any

import grpc
import yaml

from support.clients import approve, operator_channel
from support.processes import CoreProcess
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.options.v1 import options_pb2
from vivified.sdk import PluginRuntime, PluginSettings, load_manifest
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

STORAGE = "vivified.storage.v1.StoragePluginService"
RETRIEVE_METHOD = f"{STORAGE}/RetrieveObject"
COMMUNICATION = "vivified.communication.v1.CommunicationPluginService"


def write_manifest(directory: pathlib.Path, plugin_id: str, **fields: Any) -> pathlib.Path:
    data: dict[str, Any] = {
        "id": plugin_id,
        "name": plugin_id,
        "version": "0.1.0",
        "contracts": [STORAGE],
        "traits": ["storage_plugin"],
    }
    data.update(fields)
    path = directory / f"{plugin_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class RecordingStore(storage_pb2_grpc.StoragePluginServiceServicer):
    """Counts calls, keeps the metadata it saw, and does what the test sets."""

    delay: float = 0.0
    fail_with: grpc.StatusCode | None = None
    calls: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def _enter(self, name: str, context: Any) -> None:
        self.calls.append(name)
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.fail_with is not None:
            await context.abort(self.fail_with, "told to fail")

    async def StoreObject(
        self, request: storage_pb2.StoreObjectRequest, context: Any
    ) -> storage_pb2.StoreObjectResponse:
        await self._enter("StoreObject", context)
        return storage_pb2.StoreObjectResponse(object_key=request.object.object_key, content_sha256="0" * 64)

    async def RetrieveObject(
        self, request: storage_pb2.RetrieveObjectRequest, context: Any
    ) -> storage_pb2.RetrieveObjectResponse:
        await self._enter("RetrieveObject", context)
        return storage_pb2.RetrieveObjectResponse(
            object=storage_pb2.StoredObject(
                object_key=request.object_key,
                content_type="text/plain",
                content=b"CONFIDENTIAL-CANARY",
                classification=options_pb2.CLASSIFICATION_CONFIDENTIAL,
            )
        )


async def plugin_state(core: CoreProcess, plugin_id: str) -> admin_pb.Plugin | None:
    async with operator_channel(core) as channel:
        reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=5)
    return next((p for p in reply.plugins if p.plugin_id == plugin_id), None)


def plugin_settings(core: CoreProcess, manifest_path: pathlib.Path, token: str) -> PluginSettings:
    return PluginSettings(
        manifest_path=manifest_path,
        join_token=token,
        ca_file=core.operator_dir / "ca.crt",
        core_address=core.listen_address,
        bootstrap_address=core.bootstrap_address,
        trust_domain=core.trust_domain,
        shutdown_grace_seconds=0.5,
    )


async def started_plugin(core: CoreProcess, manifest_path: pathlib.Path, servicers: list[object]) -> PluginRuntime:
    """Approve, start, and wait until the core has initialised the plugin."""
    manifest = load_manifest(manifest_path)
    approval = await approve(core, manifest, replace=True)
    runtime = PluginRuntime(servicers, plugin_settings(core, manifest_path, approval.join_token))
    await runtime.start()

    async def healthy() -> bool:
        state = await plugin_state(core, manifest.id)
        return bool(
            state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY and state.status == admin_pb.PLUGIN_STATUS_ACTIVE
        )

    await until(healthy, 30, f"{manifest.id} to become healthy")
    return runtime
