"""Event-bus test plugins: manifests with publishes/subscribes, started against a
real core, and handlers that record what they received."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.sdk import PluginRuntime, ReceivedEvent

USER_CREATED = "vivified.events.v1.UserCreated"
MESSAGE_SEND_REQUESTED = "vivified.events.v1.MessageSendRequested"
EMAIL_SENT = "vivified.events.v1.EmailSent"
SECURITY_ALERT = "vivified.events.v1.SecurityAlert"
EVENT_BUS = "/vivified.events.v1.EventBusService"


def event_manifest(
    directory: pathlib.Path,
    plugin_id: str,
    *,
    publishes: Sequence[str] = (),
    subscribes: Sequence[str] = (),
    pii: bool = False,
) -> pathlib.Path:
    extra: dict[str, Any] = {"publishes": list(publishes), "subscribes": list(subscribes)}
    if pii:
        extra["traits"] = ["storage_plugin", "handles_pii", "audit_required"]
        extra["compliance"] = {"data_classifications": ["CLASSIFICATION_PII"], "retention_days": 30}
    return write_manifest(directory, plugin_id, **extra)


async def event_plugin(core: CoreProcess, directory: pathlib.Path, plugin_id: str, **manifest: Any) -> PluginRuntime:
    return await started_plugin(core, event_manifest(directory, plugin_id, **manifest), [RecordingStore()])


@dataclass
class Inbox:
    """A handler that records every delivery and fails while `failing` is set."""

    failing: bool = False
    received: list[tuple[Message, ReceivedEvent]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, payload: Message, event: ReceivedEvent) -> None:
        self.received.append((payload, event))
        self.arrived.set()
        if self.failing:
            raise RuntimeError("handler told to fail")

    def event_ids(self) -> list[str]:
        return [event.event.event_id for _, event in self.received]
