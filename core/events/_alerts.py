"""Security alerts the event bus raises about itself: each is logged, audited
(action `event.alert.<kind>`) and published as a `SecurityAlert` event that
subscribed plugins receive, in that order."""

from __future__ import annotations

import logging
import uuid

from vivified.core.audit import AuditLog, AuditRecord
from vivified.core.events._envelope import EnvelopeStamper
from vivified.core.events._store import EventStore
from vivified.events.v1.canonical_pb2 import SecurityAlert

_log = logging.getLogger(__name__)


class Alerts:
    """Raises the bus's alerts: backlog near its cap, events lost, dead letters dropped."""

    def __init__(self, *, store: EventStore, stamper: EnvelopeStamper, audit: AuditLog) -> None:
        self._store = store
        self._stamper = stamper
        self._audit = audit

    async def raise_alert(self, kind: str, severity: int, subject: str, summary: str, details: dict[str, str]) -> None:
        alert = SecurityAlert(
            alert_id=uuid.uuid4().hex,
            kind=kind,
            severity=severity,  # type: ignore[arg-type]
            summary=summary,
            subject=subject,
            details=details,
        )
        _log.warning("%s: %s", kind, summary)
        await self._audit.append(
            AuditRecord(
                actor="core:core",
                action=f"event.alert.{kind}",
                resource=f"subscription/{subject}",
                detail={"alert_id": alert.alert_id, **details},
            )
        )
        await self._store.append([self._stamper.core_event(f"alert-{alert.alert_id}", alert)])
