"""`runtime.storage` against a real core: put, stream, head, list, delete,
and the core's reasons as typed SDK errors."""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator

import pytest

from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.options.v1 import options_pb2
from vivified.sdk import VivifiedSDKError


@pytest.mark.asyncio
async def test_runtime_storage_round_trip(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    runtime = await started_plugin(core, write_manifest(tmp_path, "sdk-storer"), [RecordingStore()])
    try:
        storage = runtime.storage
        body = os.urandom(700_000)
        meta = await storage.put("scans/1", body, content_type="image/png")
        assert (meta.size, meta.owner_plugin, meta.version) == (len(body), "sdk-storer", 1)
        assert await storage.get("scans/1") == body

        async def parts() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"p" * 100_000

        streamed = await storage.put("scans/2", parts(), size=400_000)
        assert streamed.size == 400_000
        assert b"".join([c async for c in storage.stream("scans/2")]) == b"p" * 400_000
        assert (await storage.head("scans/2")).sha256 == streamed.sha256
        assert [o.name for o in (await storage.list(prefix="scans/")).objects] == ["scans/1", "scans/2"]
        await storage.delete("scans/1")
        with pytest.raises(VivifiedSDKError) as missing:
            await storage.get("scans/1")
        assert missing.value.reason == "OBJECT_NOT_FOUND"
        with pytest.raises(VivifiedSDKError) as denied:
            await storage.put("chart", b"x", classification=options_pb2.CLASSIFICATION_PHI)
        assert denied.value.reason == "OBJECT_TRAIT_REQUIRED"
        with pytest.raises(ValueError):
            await storage.put("no-size", parts())
    finally:
        await runtime.stop()
