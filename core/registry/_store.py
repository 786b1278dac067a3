"""The plugin registry's state: durable rows in SQL, an in-memory index for the
per-call status gate, and change listeners (stream closing, metrics).

Every mutation commits to the database before the in-memory view changes, so
what the status gate sees is never ahead of what survives a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from vivified.core.clock import Clock
from vivified.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Unauthenticated,
)
from vivified.core.registry._schema import (
    certificates_table,
    join_tokens_table,
    plugins_table,
)
from vivified.manifest.v1.manifest_pb2 import PluginManifest

APPROVED, ACTIVE, DISABLED, REVOKED = "approved", "active", "disabled", "revoked"
UNKNOWN, HEALTHY, UNHEALTHY = "unknown", "healthy", "unhealthy"
_DOMAIN = "vivified.registry"


@dataclass(frozen=True)
class PluginRecord:
    """The core's view of one plugin."""

    plugin_id: str
    status: str
    manifest_sha256: str
    manifest: PluginManifest
    granted_traits: frozenset[str]
    version: str
    endpoint: str = ""
    health: str = UNKNOWN
    last_heartbeat: float | None = None  # monotonic seconds
    last_heartbeat_epoch: float | None = None


Listener = Callable[[PluginRecord], None]


class PluginStore:
    """Durable plugin registry with an in-memory index."""

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._plugins: dict[str, PluginRecord] = {}
        self._revoked_serials: set[int] = set()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with the new record after every committed change."""
        self._listeners.append(listener)

    def _publish(self, record: PluginRecord) -> None:
        self._plugins[record.plugin_id] = record
        for listener in self._listeners:
            listener(record)

    def _epoch(self) -> int:
        return int(self._clock.now().timestamp())

    async def load(self) -> None:
        """Read every plugin and revoked certificate serial from the database."""

        def read() -> tuple[Sequence[sa.Row[Any]], Sequence[sa.Row[Any]]]:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(plugins_table)).all()
                revoked = conn.execute(
                    sa.select(certificates_table.c.serial).where(certificates_table.c.revoked_at.is_not(None))
                ).all()
            return rows, revoked

        rows, revoked = await asyncio.to_thread(read)
        for row in rows:
            manifest = json_format.Parse(row.manifest_json, PluginManifest())
            self._plugins[row.plugin_id] = PluginRecord(
                plugin_id=row.plugin_id,
                status=row.status,
                manifest_sha256=row.manifest_sha256,
                manifest=manifest,
                granted_traits=frozenset(json.loads(row.granted_traits)),
                version=row.version,
                endpoint=row.endpoint,
            )
        self._revoked_serials = {int(r.serial, 16) for r in revoked}

    def get(self, plugin_id: str) -> PluginRecord | None:
        return self._plugins.get(plugin_id)

    def require(self, plugin_id: str) -> PluginRecord:
        record = self._plugins.get(plugin_id)
        if record is None:
            raise NotFound(f"no plugin with id {plugin_id!r}", reason="PLUGIN_NOT_FOUND", domain=_DOMAIN)
        return record

    def all(self) -> list[PluginRecord]:
        return sorted(self._plugins.values(), key=lambda r: r.plugin_id)

    def is_revoked_serial(self, serial: int) -> bool:
        return serial in self._revoked_serials

    async def approve(
        self,
        manifest: PluginManifest,
        manifest_sha256: str,
        granted_traits: frozenset[str],
        token_sha256: str,
        token_expires_at: int,
        *,
        replace_existing: bool,
    ) -> PluginRecord:
        """Record an approval and its join token. Replacing an existing plugin
        ends its current identity: its certificates are revoked at once."""
        plugin_id = manifest.id
        existing = self._plugins.get(plugin_id)
        if existing is not None and existing.status != REVOKED and not replace_existing:
            raise AlreadyExists(
                f"plugin {plugin_id!r} is already {existing.status}; approve with replace to supersede it",
                reason="PLUGIN_ALREADY_EXISTS",
                domain=_DOMAIN,
            )
        now = self._epoch()
        values = {
            "status": APPROVED,
            "manifest_sha256": manifest_sha256,
            "manifest_json": json_format.MessageToJson(manifest, preserving_proto_field_name=True),
            "granted_traits": json.dumps(sorted(granted_traits)),
            "version": manifest.version,
            "endpoint": "",
            "updated_at": now,
        }

        def write() -> list[int]:
            with self._engine.begin() as conn:
                conn.execute(sa.delete(plugins_table).where(plugins_table.c.plugin_id == plugin_id))
                conn.execute(sa.insert(plugins_table).values(plugin_id=plugin_id, **values))
                conn.execute(
                    sa.insert(join_tokens_table).values(
                        token_sha256=token_sha256,
                        plugin_id=plugin_id,
                        manifest_sha256=manifest_sha256,
                        expires_at=token_expires_at,
                    )
                )
                return self._revoke_subject(conn, f"plugin/{plugin_id}", now)

        self._revoked_serials.update(await asyncio.to_thread(write))
        record = PluginRecord(
            plugin_id=plugin_id,
            status=APPROVED,
            manifest_sha256=manifest_sha256,
            manifest=manifest,
            granted_traits=granted_traits,
            version=manifest.version,
        )
        self._publish(record)
        return record

    @staticmethod
    def _revoke_subject(conn: sa.Connection, subject: str, now: int) -> list[int]:
        serials = conn.execute(
            sa.select(certificates_table.c.serial).where(
                certificates_table.c.subject == subject, certificates_table.c.revoked_at.is_(None)
            )
        ).all()
        conn.execute(
            sa.update(certificates_table)
            .where(certificates_table.c.subject == subject, certificates_table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return [int(s.serial, 16) for s in serials]

    def check_join_token(self, plugin_id: str, token_sha256: str) -> None:
        """Explain why a token cannot be used (it is consumed atomically later)."""

        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(join_tokens_table).where(join_tokens_table.c.token_sha256 == token_sha256)
            ).first()
        problem = None
        if row is None:
            problem = "the join token is not known to this core"
        elif row.plugin_id != plugin_id:
            problem = "the join token was issued for another plugin"
        elif row.used_at is not None:
            problem = "the join token was already used; approve the plugin again for a new one"
        elif row.expires_at <= self._epoch():
            problem = "the join token has expired; approve the plugin again for a new one"
        if problem:
            raise Unauthenticated(problem, reason="JOIN_TOKEN_INVALID", domain=_DOMAIN)

    async def register(
        self, plugin_id: str, token_sha256: str, manifest_sha256: str, endpoint: str, serial: int, not_after: int
    ) -> PluginRecord:
        """Consume the join token and activate the plugin, in one transaction.
        Of any number of concurrent registrations with one token, one wins;
        callers explain a refusal first with `check_join_token`."""
        now = self._epoch()

        def write() -> bool:
            with self._engine.begin() as conn:
                consumed = conn.execute(
                    sa.update(join_tokens_table)
                    .where(
                        join_tokens_table.c.token_sha256 == token_sha256,
                        join_tokens_table.c.plugin_id == plugin_id,
                        join_tokens_table.c.manifest_sha256 == manifest_sha256,
                        join_tokens_table.c.used_at.is_(None),
                        join_tokens_table.c.expires_at > now,
                    )
                    .values(used_at=now)
                ).rowcount
                if consumed != 1:
                    return False
                conn.execute(
                    sa.update(plugins_table)
                    .where(plugins_table.c.plugin_id == plugin_id)
                    .values(status=ACTIVE, endpoint=endpoint, updated_at=now)
                )
                conn.execute(
                    sa.insert(certificates_table).values(
                        serial=format(serial, "x"), subject=f"plugin/{plugin_id}", not_after=not_after
                    )
                )
                return True

        if not await asyncio.to_thread(write):
            raise Unauthenticated(
                "the join token was already used or is not valid for this manifest",
                reason="JOIN_TOKEN_INVALID",
                domain=_DOMAIN,
            )
        record = replace(self.require(plugin_id), status=ACTIVE, endpoint=endpoint, health=UNKNOWN)
        self._publish(record)
        return record

    async def record_certificate(self, subject: str, serial: int, not_after: int) -> None:
        """Remember an issued certificate so it can be revoked later."""

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(certificates_table).values(serial=format(serial, "x"), subject=subject, not_after=not_after)
                )

        await asyncio.to_thread(write)

    async def set_status(self, plugin_id: str, status: str) -> PluginRecord:
        """Enable, disable or revoke. Revoking revokes every certificate of the plugin."""
        record = self.require(plugin_id)
        if record.status == REVOKED and status != REVOKED:
            raise FailedPrecondition(
                f"plugin {plugin_id!r} was revoked; approve it again to readmit it",
                reason="PLUGIN_STATE",
                domain=_DOMAIN,
            )
        now = self._epoch()

        def write() -> list[int]:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.update(plugins_table)
                    .where(plugins_table.c.plugin_id == plugin_id)
                    .values(status=status, updated_at=now)
                )
                return self._revoke_subject(conn, f"plugin/{plugin_id}", now) if status == REVOKED else []

        self._revoked_serials.update(await asyncio.to_thread(write))
        updated = replace(record, status=status)
        self._publish(updated)
        return updated

    def heartbeat(self, plugin_id: str) -> PluginRecord:
        """Note a heartbeat (in memory: liveness is not durable state)."""
        record = replace(
            self.require(plugin_id),
            last_heartbeat=self._clock.monotonic(),
            last_heartbeat_epoch=self._clock.now().timestamp(),
        )
        self._publish(record)
        return record

    def set_health(self, plugin_id: str, health: str) -> PluginRecord:
        record = replace(self.require(plugin_id), health=health)
        self._publish(record)
        return record
