"""What a replica does when the registry changes elsewhere: the open streams
of a plugin disabled, revoked or re-approved through any replica are closed
here too, and every open plugin stream is closed when this replica's view goes
stale (it could be serving an identity revoked elsewhere)."""

from __future__ import annotations

import sqlalchemy as sa

from vivified.core.chain import StreamTracker
from vivified.core.registry._store import ACTIVE, APPROVED, DISABLED, REVOKED, PluginRecord, PluginStore
from vivified.core.registry._sync import RegistrySync

_CLOSING = {DISABLED: "PLUGIN_DISABLED", REVOKED: "PLUGIN_REVOKED", APPROVED: "PLUGIN_REVOKED"}


def follow_registry(store: PluginStore, engine: sa.Engine, streams: StreamTracker) -> RegistrySync:
    """Wire stream closing to registry changes and return the (unstarted) sync loop."""
    seen = {r.plugin_id: r.status for r in store.all()}

    def on_change(record: PluginRecord) -> None:
        before = seen.get(record.plugin_id)
        seen[record.plugin_id] = record.status
        if record.status in _CLOSING and before in (ACTIVE, DISABLED) and before != record.status:
            streams.close_all(record.plugin_id, _CLOSING[record.status])

    store.subscribe(on_change)

    def on_stale() -> None:
        streams.close_every("REGISTRY_STALE")

    return RegistrySync(store, engine, on_stale=on_stale)
