"""The database layer of core settings without a core: which keys may be
overridden, how stored overrides apply over the lower layers, and the store's
history on SQLite and PostgreSQL."""

from __future__ import annotations

import pathlib

import pytest

from vivified.core.clock import ManualClock
from vivified.core.config import CoreConfig
from vivified.core.db import plain_engine
from vivified.core.settings import (
    FIELDS,
    RUNTIME_KEYS,
    SETTINGS,
    Override,
    OverrideStore,
    apply_overrides,
    read_overrides,
)

BOOTSTRAP = {
    "data_dir",
    "profile",
    "listen_address",
    "bootstrap_address",
    "metrics_address",
    "trust_domain",
    "database_url",
    "policy_file",
    "egress_config",
    "ca_files",
    "redis_url",
    "secrets_key_file",
    "plugin_socket_dir",
    "secrets_key",
    "settings_refresh_seconds",
    "registry_sync_bound_seconds",
    # Resource caps a plugin could otherwise exhaust the core with: fixed at start.
    "event_max_dead_letters",
    "event_max_subscriptions",
    "max_streams",
    "max_calls",
    "max_connections",
    "handshake_timeout_seconds",
    # How long one attempt to reach a plugin's Init keeps trying: read once at start.
    "init_timeout_seconds",
    # Where objects live and their bounds: fixed at start (a quota changing under a running put would race it).
    "storage_backend",
    "storage_max_object_bytes",
    "storage_quota_bytes",
    # Whether records after a clean stop are tampering: a security setting.
    "audit_writers",
    # When an audit record is durable: a security and durability setting.
    "audit_durability",
    "audit_sync_interval",
    # A live-feed watcher's buffer bounds the core's memory per watcher: a resource cap, fixed at start.
    "audit_watch_buffer",
}


def test_only_tuning_keys_are_overridable() -> None:
    assert set(RUNTIME_KEYS) == set(FIELDS)
    assert {s.key for s in SETTINGS} - set(RUNTIME_KEYS) == BOOTSTRAP
    assert all(s.kind in ("int", "float") for s in SETTINGS if s.runtime)


def _override(key: str, value: str) -> Override:
    return Override(key, value, "operator:admin", "tuning", 1_700_000_000)


def test_overrides_win_and_name_their_source(tmp_path: pathlib.Path) -> None:
    config = CoreConfig(data_dir=tmp_path, setting_sources=(("event_max_attempts", "flag"), ("profile", "flag")))
    stored = {
        "event_max_attempts": _override("event_max_attempts", "8"),
        "event_publish_rate": _override("event_publish_rate", "50"),
        "max_call_deadline": _override("max_call_deadline", "12.5"),
        "call_rate": _override("call_rate", "40"),
        "trust_domain": _override("trust_domain", "evil.example"),  # written behind the service's back
        "leaf_ttl_seconds": _override("leaf_ttl_seconds", "3"),  # below the minimum
    }
    applied = apply_overrides(config, stored)
    assert applied.config.events.max_attempts == 8
    assert (applied.config.events.publish_rate, applied.config.events.publish_burst) == (50.0, 100)
    assert applied.config.gateway.max_deadline_seconds == 12.5
    assert (applied.config.rate_limit.rate_per_second, applied.config.rate_limit.burst) == (40.0, 80)
    assert applied.config.trust_domain == "vivified.local" and applied.config.leaf_ttl_seconds == 3600
    assert set(applied.overrides) == {"event_max_attempts", "event_publish_rate", "max_call_deadline", "call_rate"}
    assert "is a bootstrap or security setting" in applied.refused["trust_domain"]
    assert "at least 10" in applied.refused["leaf_ttl_seconds"]
    sources = dict(applied.config.setting_sources)
    assert sources["event_max_attempts"] == "database (set by operator:admin: tuning)"
    assert sources["profile"] == "flag" and "trust_domain" not in sources


@pytest.mark.asyncio
async def test_store_keeps_history(migrated_database_url: str) -> None:
    engine = plain_engine(migrated_database_url)
    clock = ManualClock()
    store = OverrideStore(engine, clock)
    try:
        await store.change("event_max_attempts", "7", actor="operator:admin", reason="first")
        clock.advance(5)
        await store.change("event_max_attempts", "9", actor="user:usr_1", reason="second")
        await store.change("breaker_cooldown", "3.0", actor="operator:admin", reason="third")
        await store.change("breaker_cooldown", None, actor="operator:admin", reason="undo")
        current = read_overrides(engine)
        assert list(current) == ["event_max_attempts"]
        assert (current["event_max_attempts"].value, current["event_max_attempts"].updated_by) == ("9", "user:usr_1")
        history = await store.history(10)
        assert [(c.key, c.old_value, c.new_value, c.changed_by, c.reason) for c in history] == [
            ("breaker_cooldown", "3.0", None, "operator:admin", "undo"),
            ("breaker_cooldown", None, "3.0", "operator:admin", "third"),
            ("event_max_attempts", "7", "9", "user:usr_1", "second"),
            ("event_max_attempts", None, "7", "operator:admin", "first"),
        ]
        assert history[2].changed_at - history[3].changed_at == 5
        assert len(await store.history(1)) == 1
    finally:
        engine.dispose()
