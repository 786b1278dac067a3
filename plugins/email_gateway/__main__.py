"""`python -m vivified.plugins.email_gateway`: run the email gateway against
the core named by the `VIVIFIED_*` environment (see `PluginSettings.from_env`),
keeping its record in `VIVIFIED_PLUGIN_DATA_DIR`, else `VIVIFIED_DATA_DIR`
(the SDK's `PluginSettings.data_dir`), else `./.email-gateway`.

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

from vivified.directory.v1.directory_pb2 import GetProfileRequest, GetProfileResponse, Profile
from vivified.egress.v1.egress_pb2 import FetchRequest, FetchResponse
from vivified.events.v1.canonical_pb2 import MessageSendRequested, UserCreated
from vivified.lifecycle.v1.lifecycle_pb2 import InitRequest
from vivified.options.v1.options_pb2 import CLASSIFICATION_PII
from vivified.plugins.email_gateway._plugin import EmailGateway
from vivified.plugins.email_gateway._store import EmailStore
from vivified.plugins.email_gateway._welcome import DIRECTORY
from vivified.sdk import PermissionDeniedError, PluginRuntime, PluginSettings, Tunnel, VivifiedSDKError

_log = logging.getLogger("vivified.plugins.email_gateway")
SUBSCRIPTION = "email-gateway"
LOOKUP_TIMEOUT_SECONDS = 5.0
MAX_RESUBSCRIBE_SECONDS = 5.0


async def serve(settings: PluginSettings, data_dir: Path) -> None:
    store = EmailStore(data_dir / "email-gateway.sqlite3")
    holder: list[PluginRuntime] = []

    async def connect(host: str, port: int, timeout: float) -> Tunnel:
        return await holder[0].connect(host, port, timeout=timeout)

    async def fetch(request: FetchRequest, timeout: float) -> FetchResponse:
        return await holder[0].fetch(request, timeout=timeout)

    async def publish(payload: Message, event_id: str) -> object:
        return await holder[0].publish(payload, event_id=event_id, timeout=10)

    async def lookup(user_id: str) -> Profile:
        # Through the core's operator lane; continues the UserCreated event's trace.
        reply = await holder[0].call(DIRECTORY, GetProfileRequest(user_id=user_id), timeout=LOOKUP_TIMEOUT_SECONDS)
        if not isinstance(reply, GetProfileResponse):
            raise TypeError("GetProfile answered with another type")
        return reply.profile

    async def archive(name: str, message: bytes) -> object:
        # The core's encrypted object store: PII, as the mail names a person.
        return await holder[0].storage.put(
            name, message, content_type="message/rfc822", classification=CLASSIFICATION_PII, timeout=10
        )

    gateway = EmailGateway(store, connect=connect, publish=publish, lookup=lookup, fetch=fetch, archive=archive)
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
        background.append(asyncio.create_task(stay_subscribed()))

    async def stay_subscribed() -> None:
        """Serve the subscription; while an operator has disabled the plugin the
        core refuses it (PLUGIN_DISABLED) and the events wait there: reopen
        with backoff, so they flow again once the plugin is enabled."""
        delay = 0.5
        while True:
            subscription = holder[0].subscribe(
                SUBSCRIPTION,
                {MessageSendRequested: gateway.on_message_send_requested, UserCreated: gateway.on_user_created},
            )
            try:
                await subscription.wait_closed()
                return
            except PermissionDeniedError as exc:
                if exc.reason != "PLUGIN_DISABLED":
                    raise
                _log.info("the plugin is disabled; reopening its subscription in %.1fs", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESUBSCRIBE_SECONDS)

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
        data_dir = os.environ.get("VIVIFIED_PLUGIN_DATA_DIR") or settings.data_dir or ".email-gateway"
        asyncio.run(serve(settings, Path(data_dir)))
    except VivifiedSDKError as error:
        _log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
