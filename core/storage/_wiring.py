"""Builds the object store service from the core's config and parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from vivified.core.chain import Principal
from vivified.core.clock import Clock
from vivified.core.config import CoreConfig
from vivified.core.identity import Delegations
from vivified.core.plugin_config import SecretsKeyring
from vivified.core.registry import ACTIVE, PluginRecord
from vivified.core.storage._backend import ObjectBackend
from vivified.core.storage._database import DatabaseBackend
from vivified.core.storage._directory import DirectoryBackend
from vivified.core.storage._service import ObjectStoreService
from vivified.core.storage._store import ObjectStore, StorageLimits


def open_backend(config: CoreConfig, engine: sa.Engine) -> ObjectBackend:
    if config.storage_backend == "database":
        return DatabaseBackend(engine)
    return DirectoryBackend(config.data_dir / "objects")


def build_object_store(
    *,
    config: CoreConfig,
    engine: sa.Engine,
    keyring: SecretsKeyring,
    clock: Clock,
    lookup: Callable[[str], PluginRecord | None],
    identify: Callable[[Any], Principal],
    delegations: Delegations,
) -> ObjectStoreService:
    def share_allowed(owner: str, reader: str) -> bool:
        record = lookup(owner)
        return record is not None and record.status == ACTIVE and reader in record.manifest.storage.share_with

    async def delegated_user(token: str, plugin_id: str) -> tuple[str, frozenset[str]]:
        user = await delegations.verify(token, plugin_id)
        return user.user_id, user.traits

    store = ObjectStore(
        open_backend(config, engine),
        keyring,
        clock,
        limits=StorageLimits(max_object_bytes=config.storage_max_object_bytes, quota_bytes=config.storage_quota_bytes),
        share_allowed=share_allowed,
    )
    return ObjectStoreService(store, plugin_lookup=lookup, identify=identify, verify_delegation=delegated_user)
