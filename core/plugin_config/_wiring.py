"""Assembles per-plugin configuration for the core."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from vivified.core.clock import Clock
from vivified.core.plugin_config._follow import ConfigFollower
from vivified.core.plugin_config._keyring import SecretsKeyring
from vivified.core.plugin_config._service import ConfigService
from vivified.core.plugin_config._store import PluginConfigStore
from vivified.core.registry import PluginRecord
from vivified.core.settings import CoreSettingsAdmin


@dataclass(frozen=True)
class PluginConfig:
    """The config service and, as its start/stop, the follower that wakes
    this core's WatchMyConfig streams on changes made through other replicas;
    `keyring` also seals the object store's data keys."""

    service: ConfigService
    follower: ConfigFollower
    keyring: SecretsKeyring
    store: PluginConfigStore
    """Also read by the egress lane, for the secret values it injects as credentials."""

    async def start(self) -> None:
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()


def build_config(
    *,
    engine: sa.Engine,
    clock: Clock,
    secrets_key: str | None,
    secrets_key_file: pathlib.Path | None,
    data_dir: pathlib.Path,
    lookup: Callable[[str], PluginRecord | None],
    core_settings: CoreSettingsAdmin,
    follow_interval: float,
) -> PluginConfig:
    """Secret values are sealed under the secrets key; a missing, weak or
    exposed key raises SecretsKeyInsecure (SECRETS_KEY_INSECURE) here."""
    keyring = SecretsKeyring.load(environ_value=secrets_key, key_file=secrets_key_file, data_dir=data_dir)
    store = PluginConfigStore(engine, clock, keyring)
    return PluginConfig(
        service=ConfigService(store, lookup, core_settings),
        follower=ConfigFollower(store, engine, interval=follow_interval),
        keyring=keyring,
        store=store,
    )
