"""`python -m vivified.plugins.email_gateway`: run the email gateway against
the core named by the `VIVIFIED_*` environment (see `PluginSettings.from_env`),
keeping its record in `VIVIFIED_PLUGIN_DATA_DIR` (default `./.email-gateway`).

Once the core has initialised it, the plugin reads its configuration, follows
changes live, and subscribes to `MessageSendRequested` and `UserCreated`.
Exits 0 after a graceful stop and 1 when it cannot start or fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from google.protobuf.message import Message

from vivified.events.v1.canonical_pb2 import MessageSendRequested, UserCreated
from vivified.lifecycle.v1.lifecycle_pb2 import InitRequest
from vivified.plugins.email_gateway._plugin import EmailGateway
from vivified.plugins.email_gateway._store import EmailStore
from vivified.sdk import PluginRuntime, PluginSettings, Tunnel, VivifiedSDKError

_log = logging.getLogger("vivified.plugins.email_gateway")
SUBSCRIPTION = "email-gateway"


async def serve(settings: PluginSettings, data_dir: Path) -> None:
    store = EmailStore(data_dir / "email-gateway.sqlite3")
    holder: list[PluginRuntime] = []

    async def connect(host: str, port: int, timeout: float) -> Tunnel:
        return await holder[0].connect(host, port, timeout=timeout)

    async def publish(payload: Message, event_id: str) -> object:
        return await holder[0].publish(payload, event_id=event_id, timeout=10)

    gateway = EmailGateway(store, connect=connect, publish=publish)
    background: list[asyncio.Task[None]] = []

    async def follow_config() -> None:
        async for config in holder[0].watch_config():
            gateway.configure(config)

    async def on_init(request: InitRequest) -> None:
        runtime = holder[0]
        gateway.configure(await runtime.config(timeout=10))
        if background:
            return  # initialised again (e.g. after a core restart): already following and subscribed
        background.append(asyncio.create_task(follow_config()))
        runtime.subscribe(
            SUBSCRIPTION,
            {MessageSendRequested: gateway.on_message_send_requested, UserCreated: gateway.on_user_created},
        )

    runtime = PluginRuntime([gateway], settings, on_init=on_init)
    holder.append(runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(runtime.wait_closed())}
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        for task in background:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, VivifiedSDKError):
            await asyncio.gather(*background, return_exceptions=True)
        await runtime.stop()
        await gateway.close()
        store.close()
    if runtime.failure is not None:
        raise runtime.failure


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = PluginSettings.from_env(os.environ)
        asyncio.run(serve(settings, Path(os.environ.get("VIVIFIED_PLUGIN_DATA_DIR") or ".email-gateway")))
    except VivifiedSDKError as error:
        _log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
