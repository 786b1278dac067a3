"""The SDK reads and watches the plugin's own configuration on a real core."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from support.clients import operator_channel
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.config.v1 import config_pb2 as pb
from vivified.config.v1 import config_pb2_grpc as config_grpc

CANARY = "CANARY-sdk-secret-0b7e3f19"


async def _set(core: CoreProcess, key: str, value: str) -> None:
    async with operator_channel(core) as channel:
        await config_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
            pb.SetPluginConfigValueRequest(plugin_id="sdk-configured", key=key, value=value, reason="sdk test"),
            timeout=10,
        )


@pytest.mark.asyncio
async def test_runtime_config_and_watch(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    manifest = write_manifest(
        tmp_path,
        "sdk-configured",
        config=[
            {"name": "batch_size", "type": "CONFIG_FIELD_TYPE_INT", "default_value": "10"},
            {"name": "dry_run", "type": "CONFIG_FIELD_TYPE_BOOL", "default_value": "true"},
            {"name": "api_token", "type": "CONFIG_FIELD_TYPE_SECRET", "required": True},
        ],
    )
    runtime = await started_plugin(core, manifest, [RecordingStore()])
    try:
        config = await runtime.config()
        assert config.get_int("batch_size") == 10 and config.get_bool("dry_run") is True
        assert config.missing_keys == ("api_token",) and "api_token" not in config
        assert config.sources == {"batch_size": "default", "dry_run": "default"}

        updates = runtime.watch_config()
        first = await asyncio.wait_for(anext(updates), 10)
        assert dict(first) == dict(config)
        await _set(core, "api_token", CANARY)
        changed = await asyncio.wait_for(anext(updates), 10)
        assert changed["api_token"] == CANARY and not changed.missing_keys
        assert CANARY not in repr(changed)
        await _set(core, "batch_size", "50")
        assert (await asyncio.wait_for(anext(updates), 10)).get_int("batch_size") == 50
        await updates.aclose()  # type: ignore[attr-defined]
    finally:
        await runtime.stop()


def test_plugin_config_is_a_read_only_mapping() -> None:
    """The whole Mapping API works (`values()` once collided with a field of
    that name), and secrets stay out of its text."""
    from vivified.sdk import PluginConfig

    config = PluginConfig({"batch_size": "10", "api_token": CANARY}, sources={"batch_size": "default"})
    assert sorted(config.values()) == sorted(["10", CANARY])
    assert dict(config.items()) == {"batch_size": "10", "api_token": CANARY}
    assert config == {"batch_size": "10", "api_token": CANARY} and len(config) == 2
    assert config.get("missing") is None and config.missing_keys == ()
    assert CANARY not in repr(config) and CANARY not in str(config)
    with pytest.raises(TypeError):
        config["batch_size"] = "11"  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.missing_keys = ("api_token",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.sources["api_token"] = "admin"  # type: ignore[index]
