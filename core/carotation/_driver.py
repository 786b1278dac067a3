"""Drives a CA rotation in the running core.

Every `interval` seconds `tick` asks the CA to perform the rotation steps
that are due (`CertificateAuthority.advance`), hands the new trust bundle to
the core (`on_trust_change`: its listeners, its calls to plugins and, after
the issuing switch, a re-issued core and operator certificate), records one
audit record per step, and updates the CA expiry gauges and alerts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vivified.core.audit import AuditRecord
from vivified.core.ca import CertificateAuthority, RotationStep, atomic_write, read_plan
from vivified.core.carotation._expiry import CertificateExpiry, LeafExpiry
from vivified.core.errors import VivifiedError
from vivified.core.registry import CertificateRecord
from vivified.events.v1.canonical_pb2 import SecurityAlert

_log = logging.getLogger(__name__)

HOLDERS_FILE = "holders.json"
"""In the CA directory during a rotation: the plugins holding a valid
certificate of the old chain, rewritten at every tick (`vivified ca status`)."""


@dataclass(frozen=True, slots=True)
class TrustChange:
    """What changed at a tick: the bundle to trust, and whether leaves now
    come from a new issuing CA (the core's own certificates must follow)."""

    bundle_pem: bytes
    switched: bool


class CARotationDriver:
    """Performs, applies and audits the steps of a CA rotation."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        leaf_ttl: Callable[[], dt.timedelta],
        on_trust_change: Callable[[TrustChange], Awaitable[None]],
        audit: Callable[[AuditRecord], Awaitable[object]],
        publish_alert: Callable[[SecurityAlert], Awaitable[None]],
        expiry: CertificateExpiry,
        certificates: Callable[[], Awaitable[list[CertificateRecord]]],
        leaf_expiry: LeafExpiry,
        active_plugins: Callable[[], set[str]],
        interval: float = 1.0,
        leaf_check_every: int = 5,
    ) -> None:
        self._certificates = certificates
        self._leaf_expiry = leaf_expiry
        self._active_plugins = active_plugins
        self._leaf_check_every = leaf_check_every
        self._ticks = 0
        self._ca = ca
        self._leaf_ttl = leaf_ttl
        self._on_trust_change = on_trust_change
        self._audit = audit
        self._publish_alert = publish_alert
        self._expiry = expiry
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> list[RotationStep]:
        try:
            # File moves and key loading: off the event loop.
            steps = await asyncio.to_thread(self._ca.advance, self._leaf_ttl())
        except (VivifiedError, OSError) as exc:
            _log.error("CA rotation step failed: %s", exc)
            steps = []
        if steps:
            switched = any(step.action == "ca.issuing.switch" for step in steps)
            await self._on_trust_change(TrustChange(self._ca.trust_bundle_pem, switched))
            for step in steps:
                _log.warning("CA rotation: %s %s", step.action, step.detail)
                await self._audit(AuditRecord(actor="core:core", action=step.action, resource="ca", detail=step.detail))
        roles = [("issuing", self._ca.issuing_certificate), ("root", self._ca.root_certificate)]
        roles += [("trusted-root", cert) for cert in self._ca.trusted_roots[1:]]
        alerts = self._expiry.observe(roles, self._ca.now())
        self._ticks += 1
        if self._ticks % self._leaf_check_every == 0:
            records = await self._certificates()
            alerts += self._leaf_expiry.observe(records, self._active_plugins(), self._ca.now())
        for alert in alerts:
            await self._publish_alert(alert)
        await self._write_holders()
        return steps

    async def old_chain_holders(self) -> list[str] | None:
        """Plugins with a valid certificate of the old chain, None outside a rotation."""
        directory = self._ca.directory
        plan = read_plan(directory) if directory is not None else None
        if plan is None:
            return None
        now = self._ca.now().timestamp()
        cutoff = plan.switched_at.timestamp() if plan.switched_at is not None else float("inf")
        holders = {
            record.subject.removeprefix("plugin/")
            for record in await self._certificates()
            if record.revoked_at is None and record.not_after > now and (record.issued_at or 0) < cutoff
        }
        return sorted(holders)

    async def _write_holders(self) -> None:
        directory = self._ca.directory
        if directory is None:
            return
        holders = await self.old_chain_holders()
        path = directory / HOLDERS_FILE
        if holders is None:
            path.unlink(missing_ok=True)
            return
        text = json.dumps({"as_of": self._ca.now().isoformat(), "plugins": holders})
        await asyncio.to_thread(atomic_write, path, text.encode(), 0o600)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed tick must not end rotation for good
                _log.exception("CA rotation tick failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
