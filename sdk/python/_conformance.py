"""The conformance suite's control hook (docs/plugin-protocol.md, "Conformance
control hook"), off unless `VIVIFIED_CONFORMANCE_CONTROL` names a file.

When on, the runtime appends one JSON object per line to that file:

- for every delivery whose `event_id` starts with `conformance-` (the suite's
  own events; the plugin's handlers never see them): `{"check": "event",
  "event_id", "event_type", "attempt", "action": "ack" | "nack"}`, nacking the
  first delivery of an id starting `conformance-nack-` and acking every other;
- while a file named like the control file plus `.hold-init` exists, each
  Init is refused (`{"check": "init", "action": "refused"}`), so the suite can
  look at the plugin between Register and a successful Init;
- once after Init succeeded, for each core refusal it provokes (a call to a
  plugin its manifest does not declare, a fetch of a host it may not reach):
  `{"check": "error", "operation", "error": <typed error class>, "code",
  "reason", "domain", "metadata"}`, the fields read from the typed error the
  SDK raised.

Nothing is read from the file: it tells the suite what the plugin did."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vivified.communication.v1 import communication_pb2
from vivified.egress.v1 import egress_pb2
from vivified.sdk._errors import VivifiedSDKError

CONTROL_ENV = "VIVIFIED_CONFORMANCE_CONTROL"
EVENT_PREFIX = "conformance-"
NACK_PREFIX = "conformance-nack-"
ABSENT_PLUGIN = "conformance-absent"
UNREACHABLE_URL = "https://conformance.invalid/"


class ConformanceControl:
    """Appends what the plugin did to the suite's control file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._probed = False

    def record(self, **fields: Any) -> None:
        line = json.dumps(fields, sort_keys=True) + "\n"
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)

    def init_held(self) -> bool:
        """Whether the suite holds Init back (its `.hold-init` file exists); recorded when it does."""
        held = self._path.with_name(self._path.name + ".hold-init").exists()
        if held:
            self.record(check="init", action="refused")
        return held

    def delivery(self, event_id: str, event_type: str, attempt: int) -> bool | None:
        """True (ack) or False (nack) for one of the suite's events; None for any other."""
        if not event_id.startswith(EVENT_PREFIX):
            return None
        ack = not (event_id.startswith(NACK_PREFIX) and attempt <= 1)
        self.record(
            check="event", event_id=event_id, event_type=event_type, attempt=attempt, action="ack" if ack else "nack"
        )
        return ack

    async def probe_errors(
        self,
        call: Callable[[str, communication_pb2.GetMessageStatusRequest], Awaitable[object]],
        fetch: Callable[[egress_pb2.FetchRequest], Awaitable[object]],
    ) -> None:
        """Provoke two core refusals and record the typed error each one became (once per process)."""
        if self._probed:
            return
        self._probed = True
        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "call": lambda: call(ABSENT_PLUGIN, communication_pb2.GetMessageStatusRequest(message_id="conformance")),
            "fetch": lambda: fetch(egress_pb2.FetchRequest(method="GET", url=UNREACHABLE_URL)),
        }
        for operation, probe in probes.items():
            try:
                await probe()
            except VivifiedSDKError as error:
                self.record(
                    check="error",
                    operation=operation,
                    error=type(error).__name__,
                    code=error.code.name,
                    reason=error.reason,
                    domain=error.domain,
                    metadata=error.metadata,
                )
            except Exception as error:  # noqa: BLE001 - reported to the suite as an untyped error
                self.record(
                    check="error",
                    operation=operation,
                    error=type(error).__name__,
                    code="",
                    reason="",
                    domain="",
                    metadata={},
                )
            else:
                self.record(check="error", operation=operation, error="", code="OK", reason="", domain="", metadata={})


def control_from(path: str) -> ConformanceControl | None:
    return ConformanceControl(Path(path)) if path else None
