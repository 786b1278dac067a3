"""Fixtures for the SDK tests: a throwaway CA, a fake core on loopback, and a
factory that starts plugin runtimes and always stops them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import PluginRuntime, PluginSettings
from vivified.sdk.testing import FakeCore, LocalCA

StartPlugin = Callable[..., Awaitable[PluginRuntime]]


@pytest.fixture
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture
def manifest_path() -> Path:
    return Path(str(resources.files("vivified.plugins.example_echo") / "manifest.yaml"))


@pytest_asyncio.fixture
async def fake_core(ca: LocalCA) -> AsyncIterator[FakeCore]:
    async with FakeCore(ca) as core:
        yield core


@pytest.fixture
def settings(fake_core: FakeCore, tmp_path: Path, manifest_path: Path) -> PluginSettings:
    return fake_core.settings(tmp_path, manifest_path, shutdown_grace_seconds=1.0)


@pytest_asyncio.fixture
async def start_plugin(settings: PluginSettings) -> AsyncIterator[StartPlugin]:
    """`await start_plugin(servicers=None, settings=None, **runtime_kwargs)` → a started
    runtime serving the echo plugin by default; every runtime is stopped afterwards."""
    runtimes: list[PluginRuntime] = []

    async def start(
        servicers: list[object] | None = None, settings_: PluginSettings | None = None, **kwargs: Any
    ) -> PluginRuntime:
        runtime = PluginRuntime(servicers or [EchoCommunicationPlugin()], settings_ or settings, **kwargs)
        runtimes.append(runtime)
        await runtime.start()
        return runtime

    yield start
    for runtime in runtimes:
        await runtime.stop("test over")
