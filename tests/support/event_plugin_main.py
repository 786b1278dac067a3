"""A subscriber plugin process for crash tests: `python -m support.event_plugin_main`
with the SDK's VIVIFIED_* variables, EVENT_LOG (a file that gets one line per
delivery: `<event_id> <attempt>`) and EVENT_HANG=1 to never finish a handler
(so nothing is acknowledged)."""

from __future__ import annotations

import asyncio
import os

from google.protobuf.message import Message

from support.lane import RecordingStore
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.sdk import PluginRuntime, PluginSettings, ReceivedEvent


async def main() -> None:
    log_path, hang = os.environ["EVENT_LOG"], os.environ.get("EVENT_HANG") == "1"

    async def handle(payload: Message, event: ReceivedEvent) -> None:
        with open(log_path, "a") as log:
            log.write(f"{event.event.event_id} {event.attempt}\n")
            log.flush()
            os.fsync(log.fileno())
        if hang:
            await asyncio.Event().wait()

    runtime = PluginRuntime([RecordingStore()], PluginSettings.from_env(os.environ))
    await runtime.start()
    await runtime.subscribe("users", {UserCreated: handle}).opened()
    with open(log_path, "a") as log:
        log.write("opened\n")
    await runtime.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
