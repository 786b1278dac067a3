"""The plugin registry's state: durable rows in SQL shared by every core
replica, an in-memory index for the per-call status gate, and change listeners
(stream closing, policy, metrics).

Every mutation commits to the database before the in-memory view changes, so
what the status gate sees is never ahead of what survives a restart. Each
mutation also bumps the registry version and names what it changed in
`registry_changes`, in the same transaction; `sync` applies the changes other
replicas committed since the version this one last applied. `SyncLoop` runs
`sync` every `sync_bound / 4` seconds and at once when PostgreSQL notifies a
change, and `stale()` says why the registry view can no longer be trusted when
no sync has succeeded for longer than `sync_bound` (the status gate then
refuses plugin calls: fail closed).

Liveness is shared too: heartbeats are stored as `last_heartbeat_ms`
(not versioned: they change every few seconds and move no decision), health
transitions are versioned changes made by conditional updates, so of several
replicas noticing the same transition exactly one makes it (and audits it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
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
from vivified.core.kinds import PluginStatus
from vivified.core.registry._schema import (
    certificates_table,
    join_tokens_table,
    plugins_table,
    registry_changes_table,
    registry_state_table,
)
from vivified.manifest.v1.manifest_pb2 import PluginManifest

APPROVED, ACTIVE, DISABLED, REVOKED = (
    PluginStatus.APPROVED,
    PluginStatus.ACTIVE,
    PluginStatus.DISABLED,
    PluginStatus.REVOKED,
)
UNKNOWN, HEALTHY, UNHEALTHY = "unknown", "healthy", "unhealthy"
INIT_FAILED = "init_failed"
"""Health of a registered plugin whose Init has not succeeded yet (it failed or
timed out, and the core retries it): shown as unhealthy, routed nothing, and
unlike UNHEALTHY not made healthy by heartbeats, only by a successful Init."""
_DOMAIN = "vivified.registry"
NOTIFY_CHANNEL = "vivified_registry"
"""PostgreSQL channel every registry change is notified on (payload: the version)."""


@dataclass(frozen=True)
class PluginRecord:
    """The core's view of one plugin."""

    plugin_id: str
    status: PluginStatus
    manifest_sha256: str
    manifest: PluginManifest
    granted_traits: frozenset[str]
    version: str
    endpoint: str = ""
    health: str = UNKNOWN
    last_heartbeat_epoch: float | None = None
    artifact_sha256: str = ""
    """sha256 (hex) of the approved plugin artifact; empty when the approval named none."""


@dataclass(frozen=True)
class CertificateRecord:
    """One issued certificate the registry remembers (plugin or operator)."""

    serial: int
    subject: str
    not_after: int
    issued_at: int | None
    revoked_at: int | None


@dataclass(frozen=True)
class HealthChange:
    """A health transition this replica made (and so must record)."""

    plugin_id: str
    before: str
    after: str


Listener = Callable[[PluginRecord], None]


def _record(row: sa.Row[Any]) -> PluginRecord:
    beat = row.last_heartbeat_ms
    return PluginRecord(
        plugin_id=row.plugin_id,
        status=PluginStatus(row.status),
        manifest_sha256=row.manifest_sha256,
        artifact_sha256=row.artifact_sha256,
        manifest=json_format.Parse(row.manifest_json, PluginManifest()),
        granted_traits=frozenset(json.loads(row.granted_traits)),
        version=row.version,
        endpoint=row.endpoint,
        health=row.health,
        last_heartbeat_epoch=None if beat is None else beat / 1000,
    )


class PluginStore:
    """Durable plugin registry with an in-memory index kept in step with the database."""

    def __init__(self, engine: sa.Engine, clock: Clock, *, sync_bound: float = 1.0) -> None:
        self._engine = engine
        self._clock = clock
        self._plugins: dict[str, PluginRecord] = {}
        self._revoked_serials: set[int] = set()
        self._listeners: list[Listener] = []
        self._notify = engine.dialect.name == "postgresql"
        self.sync_bound = sync_bound
        self._version = 0
        self._synced_at: float | None = None
        self._sync_problem = "the registry has not been read yet"
        # Reads of the database and what they change in the index happen one at a time, and a
        # writer publishes its record only once no read is in flight: a sync that read a row
        # before a commit can then never apply it after the committed record (a registration
        # answered ACTIVE, then overwritten by the older APPROVED row until the next sync).
        self._reading = asyncio.Lock()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with the new record after every committed change
        (this replica's, or another's once `sync` applies it)."""
        self._listeners.append(listener)

    def _publish(self, record: PluginRecord) -> None:
        self._plugins[record.plugin_id] = record
        for listener in self._listeners:
            listener(record)

    def _epoch(self) -> int:
        return int(self._clock.now().timestamp())

    def _epoch_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    # -- reading and keeping current ------------------------------------------------

    async def load(self) -> None:
        """Read every plugin and revoked certificate serial from the database."""

        def read() -> tuple[int, Sequence[sa.Row[Any]], Sequence[sa.Row[Any]]]:
            with self._engine.connect() as conn:
                # The version first: a change committed after it is applied
                # again by the next sync (applying a subject is idempotent).
                version = conn.execute(sa.select(registry_state_table.c.version)).scalar_one()
                rows = conn.execute(sa.select(plugins_table)).all()
                revoked = conn.execute(
                    sa.select(certificates_table.c.serial).where(certificates_table.c.revoked_at.is_not(None))
                ).all()
            return version, rows, revoked

        started = self._clock.monotonic()
        async with self._reading:
            version, rows, revoked = await asyncio.to_thread(read)
            for row in rows:
                self._plugins[row.plugin_id] = _record(row)
            self._revoked_serials = {int(r.serial, 16) for r in revoked}
            self._version = version
            self._synced_at = started

    @property
    def version(self) -> int:
        """The registry version this replica has applied."""
        return self._version

    def _read_subjects(
        self, conn: sa.Connection, subjects: Iterable[str]
    ) -> tuple[dict[str, sa.Row[Any] | None], dict[str, set[int]]]:
        subjects = sorted(set(subjects))
        plugin_ids = [s.removeprefix("plugin/") for s in subjects if s.startswith("plugin/")]
        rows: dict[str, sa.Row[Any] | None] = dict.fromkeys(plugin_ids)
        if plugin_ids:
            for row in conn.execute(sa.select(plugins_table).where(plugins_table.c.plugin_id.in_(plugin_ids))):
                rows[row.plugin_id] = row
        revoked: dict[str, set[int]] = {s: set() for s in subjects}
        if subjects:
            for cert in conn.execute(
                sa.select(certificates_table.c.serial, certificates_table.c.subject).where(
                    certificates_table.c.subject.in_(subjects), certificates_table.c.revoked_at.is_not(None)
                )
            ):
                revoked[cert.subject].add(int(cert.serial, 16))
        return rows, revoked

    def _apply(self, rows: dict[str, sa.Row[Any] | None], revoked: dict[str, set[int]]) -> None:
        for serials in revoked.values():
            self._revoked_serials.update(serials)  # a revocation is never undone
        for plugin_id, row in rows.items():
            if row is None:
                self._plugins.pop(plugin_id, None)
                continue
            record = _record(row)
            current = self._plugins.get(plugin_id)
            if current is None or replace(current, last_heartbeat_epoch=None) != replace(
                record, last_heartbeat_epoch=None
            ):
                self._publish(record)
            else:
                self._plugins[plugin_id] = record

    async def sync(self) -> int:
        """Apply every change committed after the version this replica applied;
        returns how many. Database errors propagate (the caller retries)."""
        started = self._clock.monotonic()
        after = self._version
        self._sync_problem = "the database has not answered the last read of registry changes"

        def read() -> tuple[int, dict[str, sa.Row[Any] | None], dict[str, set[int]]]:
            with self._engine.connect() as conn:
                changes = conn.execute(
                    sa.select(registry_changes_table.c.version, registry_changes_table.c.subject)
                    .where(registry_changes_table.c.version > after)
                    .order_by(registry_changes_table.c.version)
                ).all()
                if not changes:
                    return after, {}, {}
                rows, revoked = self._read_subjects(conn, (c.subject for c in changes))
                return changes[-1].version, rows, revoked

        async with self._reading:
            version, rows, revoked = await asyncio.to_thread(read)
            if version > self._version:
                self._apply(rows, revoked)
                self._version = version
        self._synced_at = max(self._synced_at or started, started)
        return len(revoked)

    async def fetch(self, plugin_id: str) -> PluginRecord | None:
        """Read one plugin from the database now (for decisions that must not
        wait for the next sync: registration, administration)."""
        subject = f"plugin/{plugin_id}"

        def read() -> tuple[dict[str, sa.Row[Any] | None], dict[str, set[int]]]:
            with self._engine.connect() as conn:
                return self._read_subjects(conn, [subject])

        async with self._reading:
            rows, revoked = await asyncio.to_thread(read)
            self._apply(rows, revoked)
            return self._plugins.get(plugin_id)

    async def fetch_required(self, plugin_id: str) -> PluginRecord:
        record = await self.fetch(plugin_id)
        if record is None:
            raise NotFound(f"no plugin with id {plugin_id!r}", reason="PLUGIN_NOT_FOUND", domain=_DOMAIN)
        return record

    def sync_failed(self, problem: str) -> None:
        """Note why the last sync failed (said by `stale` once the bound passes)."""
        self._sync_problem = problem

    def stale(self) -> str | None:
        """None while this replica's view is within `sync_bound` of the
        database; otherwise why it cannot be trusted."""
        if self._synced_at is None:
            return self._sync_problem
        age = self._clock.monotonic() - self._synced_at
        if age <= self.sync_bound:
            return None
        return (
            f"this core has not read registry changes for {age:.1f}s (bound {self.sync_bound:g}s): {self._sync_problem}"
        )

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

    # -- writing --------------------------------------------------------------------

    def _changed(self, conn: sa.Connection, subjects: Iterable[str], now: int) -> int:
        """Bump the registry version once per subject, in the writer's transaction."""
        version = 0
        for subject in subjects:
            conn.execute(sa.update(registry_state_table).values(version=registry_state_table.c.version + 1))
            version = conn.execute(sa.select(registry_state_table.c.version)).scalar_one()
            conn.execute(sa.insert(registry_changes_table).values(version=version, subject=subject, changed_at=now))
        if self._notify and version:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, str(version))))
        return version

    async def approve(
        self,
        manifest: PluginManifest,
        manifest_sha256: str,
        granted_traits: frozenset[str],
        token_sha256: str,
        token_expires_at: int,
        *,
        replace_existing: bool,
        artifact_sha256: str = "",
    ) -> PluginRecord:
        """Record an approval and its join token. Replacing an existing plugin
        ends its current identity: its certificates are revoked at once."""
        plugin_id = manifest.id
        existing = await self.fetch(plugin_id)
        if existing is not None and existing.status != REVOKED and not replace_existing:
            raise AlreadyExists(
                f"plugin {plugin_id!r} is already {existing.status}; approve with replace to supersede it",
                reason="PLUGIN_ALREADY_EXISTS",
                domain=_DOMAIN,
            )
        now = self._epoch()
        subject = f"plugin/{plugin_id}"
        values = {
            "status": APPROVED,
            "manifest_sha256": manifest_sha256,
            "artifact_sha256": artifact_sha256,
            "manifest_json": json_format.MessageToJson(manifest, preserving_proto_field_name=True),
            "granted_traits": json.dumps(sorted(granted_traits)),
            "version": manifest.version,
            "endpoint": "",
            "updated_at": now,
            "health": UNKNOWN,
            "last_heartbeat_ms": None,
        }

        def write() -> list[int]:
            with self._engine.begin() as conn:
                self._changed(conn, [subject], now)
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
                return self._revoke_subject(conn, subject, now)

        self._revoked_serials.update(await asyncio.to_thread(write))
        record = PluginRecord(
            plugin_id=plugin_id,
            status=APPROVED,
            manifest_sha256=manifest_sha256,
            manifest=manifest,
            granted_traits=granted_traits,
            version=manifest.version,
            artifact_sha256=artifact_sha256,
        )
        async with self._reading:
            self._publish(record)
        return record

    @staticmethod
    def _revoke_subject(conn: sa.Connection, subject: str, now: int, serial: int | None = None) -> list[int]:
        """Revoke every live certificate of `subject` (or only `serial`); returns the serials."""
        where = [certificates_table.c.subject == subject, certificates_table.c.revoked_at.is_(None)]
        if serial is not None:
            where.append(certificates_table.c.serial == format(serial, "x"))
        serials = conn.execute(sa.select(certificates_table.c.serial).where(*where)).all()
        conn.execute(sa.update(certificates_table).where(*where).values(revoked_at=now))
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
        subject = f"plugin/{plugin_id}"

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
                self._changed(conn, [subject], now)
                conn.execute(
                    sa.update(plugins_table)
                    .where(plugins_table.c.plugin_id == plugin_id)
                    .values(status=ACTIVE, endpoint=endpoint, updated_at=now, health=UNKNOWN, last_heartbeat_ms=None)
                )
                conn.execute(
                    sa.insert(certificates_table).values(
                        serial=format(serial, "x"), subject=subject, not_after=not_after, issued_at=now
                    )
                )
                return True

        if not await asyncio.to_thread(write):
            raise Unauthenticated(
                "the join token was already used or is not valid for this manifest",
                reason="JOIN_TOKEN_INVALID",
                domain=_DOMAIN,
            )
        record = await self.fetch_required(plugin_id)
        return record

    async def resume(self, plugin_id: str, manifest_sha256: str, endpoint: str) -> PluginRecord | None:
        """Re-admit an active plugin at `endpoint` after its process restarted:
        the endpoint is stored and its health starts over (UNKNOWN, no
        heartbeat), as after Register, so nothing is routed to it before its
        next Init. Conditional on the plugin still being active under the
        approval `manifest_sha256` (a revocation, a disable or a new approval
        committed meanwhile wins); returns None when it no longer is."""
        now = self._epoch()
        subject = f"plugin/{plugin_id}"

        def write() -> bool:
            with self._engine.begin() as conn:
                updated = conn.execute(
                    sa.update(plugins_table)
                    .where(
                        plugins_table.c.plugin_id == plugin_id,
                        plugins_table.c.status == ACTIVE,
                        plugins_table.c.manifest_sha256 == manifest_sha256,
                    )
                    .values(endpoint=endpoint, updated_at=now, health=UNKNOWN, last_heartbeat_ms=None)
                ).rowcount
                if updated != 1:
                    return False
                self._changed(conn, [subject], now)
                return True

        if not await asyncio.to_thread(write):
            await self.fetch(plugin_id)
            return None
        return await self.fetch_required(plugin_id)

    async def record_certificate(self, subject: str, serial: int, not_after: int) -> None:
        """Remember an issued certificate so it can be listed and revoked later."""
        now = self._epoch()

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(certificates_table).values(
                        serial=format(serial, "x"), subject=subject, not_after=not_after, issued_at=now
                    )
                )

        await asyncio.to_thread(write)

    async def certificates(self, prefix: str) -> list[CertificateRecord]:
        """Every recorded certificate whose subject starts with `prefix`, newest first."""

        def read() -> Sequence[sa.Row[Any]]:
            with self._engine.connect() as conn:
                return conn.execute(
                    sa.select(certificates_table)
                    .where(certificates_table.c.subject.startswith(prefix, autoescape=True))
                    .order_by(certificates_table.c.issued_at.desc(), certificates_table.c.serial)
                ).all()

        return [
            CertificateRecord(int(r.serial, 16), r.subject, r.not_after, r.issued_at, r.revoked_at)
            for r in await asyncio.to_thread(read)
        ]

    async def revoke_certificate(self, serial: int, prefix: str) -> CertificateRecord:
        """Revoke one recorded certificate whose subject starts with `prefix`
        (every replica refuses it once it syncs); revoking twice is a no-op."""
        now = self._epoch()
        key = format(serial, "x")

        def write() -> sa.Row[Any] | None:
            with self._engine.begin() as conn:
                row = conn.execute(sa.select(certificates_table).where(certificates_table.c.serial == key)).first()
                if row is None or not row.subject.startswith(prefix):
                    return None
                if row.revoked_at is None:
                    self._changed(conn, [row.subject], now)
                    self._revoke_subject(conn, row.subject, now, serial)
                return conn.execute(sa.select(certificates_table).where(certificates_table.c.serial == key)).first()

        row = await asyncio.to_thread(write)
        if row is None:
            raise NotFound(
                f"no {prefix.rstrip('/')} certificate with serial {key}", reason="CERTIFICATE_NOT_FOUND", domain=_DOMAIN
            )
        self._revoked_serials.add(serial)
        return CertificateRecord(serial, row.subject, row.not_after, row.issued_at, row.revoked_at)

    async def set_status(self, plugin_id: str, status: PluginStatus) -> PluginRecord:
        """Enable, disable or revoke. Revoking revokes every certificate of the
        plugin and ends its observed health (UNKNOWN: nothing is observed any more)."""
        record = await self.fetch_required(plugin_id)
        if record.status == REVOKED and status != REVOKED:
            raise FailedPrecondition(
                f"plugin {plugin_id!r} was revoked; approve it again to readmit it",
                reason="PLUGIN_STATE",
                domain=_DOMAIN,
            )
        now = self._epoch()
        subject = f"plugin/{plugin_id}"

        values: dict[str, object] = {"status": status, "updated_at": now}
        if status == REVOKED:
            values["health"] = UNKNOWN

        def write() -> list[int]:
            with self._engine.begin() as conn:
                self._changed(conn, [subject], now)
                conn.execute(sa.update(plugins_table).where(plugins_table.c.plugin_id == plugin_id).values(**values))
                return self._revoke_subject(conn, subject, now) if status == REVOKED else []

        self._revoked_serials.update(await asyncio.to_thread(write))
        updated = replace(record, status=status, health=UNKNOWN if status == REVOKED else record.health)
        async with self._reading:
            self._publish(updated)
        return updated

    # -- liveness ---------------------------------------------------------------------

    async def heartbeat(self, plugin_id: str) -> PluginRecord:
        """Store a heartbeat's time (shared by every replica; not a versioned change)."""
        now_ms = self._epoch_ms()

        def write() -> None:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.update(plugins_table)
                    .where(plugins_table.c.plugin_id == plugin_id)
                    .values(last_heartbeat_ms=now_ms)
                )

        await asyncio.to_thread(write)
        record = replace(self.require(plugin_id), last_heartbeat_epoch=now_ms / 1000)
        self._plugins[plugin_id] = record
        return record

    async def set_health(
        self, plugin_id: str, health: str, *, expect: Iterable[str] | None = None, silent_before_ms: int | None = None
    ) -> HealthChange | None:
        """Change a plugin's health if it is active and its stored health is one
        of `expect` (any other health when None) and, with `silent_before_ms`,
        its last heartbeat is older than that. Returns the change when this
        call made it: of replicas racing for one transition exactly one does."""
        now = self._epoch()
        subject = f"plugin/{plugin_id}"
        allowed = [h for h in (expect or (UNKNOWN, HEALTHY, UNHEALTHY, INIT_FAILED)) if h != health]

        def write() -> str | None:
            with self._engine.begin() as conn:
                where = [
                    plugins_table.c.plugin_id == plugin_id,
                    plugins_table.c.status == ACTIVE,
                    plugins_table.c.health.in_(allowed),
                ]
                if silent_before_ms is not None:
                    where.append(
                        sa.or_(
                            plugins_table.c.last_heartbeat_ms.is_(None),
                            plugins_table.c.last_heartbeat_ms < silent_before_ms,
                        )
                    )
                before = conn.execute(sa.select(plugins_table.c.health).where(*where).with_for_update()).scalar()
                if before is None:
                    return None
                if conn.execute(sa.update(plugins_table).where(*where).values(health=health)).rowcount != 1:
                    return None
                self._changed(conn, [subject], now)
                return str(before)

        before = await asyncio.to_thread(write)
        await self.fetch(plugin_id)
        return None if before is None else HealthChange(plugin_id, before, health)

    async def liveness(self) -> list[tuple[str, str, int | None]]:
        """(plugin id, health, last heartbeat ms) of every active plugin, from the database."""

        def read() -> Sequence[sa.Row[Any]]:
            with self._engine.connect() as conn:
                return conn.execute(  # type: ignore[return-value]
                    sa.select(plugins_table.c.plugin_id, plugins_table.c.health, plugins_table.c.last_heartbeat_ms)
                    .where(plugins_table.c.status == ACTIVE)
                    .order_by(plugins_table.c.plugin_id)
                ).all()

        rows = await asyncio.to_thread(read)
        for row in rows:
            current = self._plugins.get(row.plugin_id)
            if current is not None and row.last_heartbeat_ms is not None:
                self._plugins[row.plugin_id] = replace(current, last_heartbeat_epoch=row.last_heartbeat_ms / 1000)
        return [(r.plugin_id, r.health, r.last_heartbeat_ms) for r in rows]
