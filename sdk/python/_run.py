"""`run`: the blocking entry point of a plugin process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence

from vivified.lifecycle.v1.lifecycle_pb2 import InitRequest
from vivified.sdk._logs import configure_json_logging
from vivified.sdk._manifest import load_manifest
from vivified.sdk._runtime import PluginRuntime, ServicerFactory
from vivified.sdk._settings import PluginSettings


async def serve(
    servicers: Sequence[object] | ServicerFactory,
    settings: PluginSettings,
    *,
    on_init: Callable[[InitRequest], Awaitable[None]] | None = None,
    on_shutdown: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """`run` for callers that already have an event loop."""
    runtime = PluginRuntime(servicers, settings, on_init=on_init, on_shutdown=on_shutdown)
    loop = asyncio.get_running_loop()
    received: list[str] = []
    requested = asyncio.Event()

    def on_signal(name: str) -> None:
        received.append(name)
        requested.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        # A signal during start() is acted on once start() returns: stopping a
        # half-registered plugin would leave the core waiting for its Init.
        await runtime.start()
        waiters = {asyncio.create_task(requested.wait()), asyncio.create_task(runtime.wait_closed())}
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runtime.stop(received[0] if received else "shutdown")
    if runtime.failure is not None:
        raise runtime.failure


def run(
    servicers: Sequence[object] | ServicerFactory,
    settings: PluginSettings,
    *,
    on_init: Callable[[InitRequest], Awaitable[None]] | None = None,
    on_shutdown: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Register, serve until SIGTERM/SIGINT or the core's Shutdown, then stop
    gracefully and return (so the process exits 0). Startup errors and an
    unrecoverable failure (e.g. the certificate expired) are raised as
    `VivifiedSDKError`, so the process exits non-zero and a supervisor restarts it.

    `servicers` may be a factory that receives the `PluginRuntime`, so the
    servicers can call, publish, subscribe, fetch and read config.

    Example (a plugin's `__main__.py`)::

        import os
        from vivified.sdk import PluginSettings, run

        run(lambda runtime: [MyPlugin(runtime)], PluginSettings.from_env(os.environ))
    """
    if settings.log_format == "json":
        configure_json_logging(load_manifest(settings.manifest_path).id)
    asyncio.run(serve(servicers, settings, on_init=on_init, on_shutdown=on_shutdown))
