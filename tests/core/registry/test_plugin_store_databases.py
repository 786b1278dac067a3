"""The plugin registry's durable state on SQLite and PostgreSQL: approval,
registration, status changes and revocation survive a reload, and a join
token works exactly once even when two core replicas race for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from support.clients import manifest_message
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for
from vivified.core.errors import Unauthenticated
from vivified.core.registry import ACTIVE, APPROVED, DISABLED, REVOKED, PluginStore

pytestmark = pytest.mark.asyncio

DIGEST = "d" * 64
FAR = 10**10


@pytest.fixture
def engines(migrated_database_url: str) -> Iterator[list[sa.Engine]]:
    """Two engines on one database: two core replicas."""
    made = [create_engine_for(migrated_database_url), create_engine_for(migrated_database_url)]
    yield made
    for engine in made:
        engine.dispose()


async def _approved(store: PluginStore, plugin_id: str, token: str) -> None:
    manifest = manifest_message(plugin_id)
    await store.approve(manifest, DIGEST, frozenset(manifest.traits), token, FAR, replace_existing=True)


async def test_approve_register_and_status_survive_a_reload(engines: list[sa.Engine]) -> None:
    clock = ManualClock()
    store = PluginStore(engines[0], clock)
    await _approved(store, "durable", "a" * 64)
    assert store.require("durable").status == APPROVED
    await store.register("durable", "a" * 64, DIGEST, "127.0.0.1:9", serial=0xBEEF, not_after=FAR)
    await store.set_status("durable", DISABLED)

    replica = PluginStore(engines[1], clock)
    await replica.load()
    record = replica.require("durable")
    assert (record.status, record.endpoint, record.version) == (DISABLED, "127.0.0.1:9", "0.1.0")
    assert record.granted_traits == frozenset({"communication_plugin"})
    assert record.manifest.id == "durable"
    assert not replica.is_revoked_serial(0xBEEF)

    await store.set_status("durable", ACTIVE)
    await store.set_status("durable", REVOKED)
    assert store.is_revoked_serial(0xBEEF)
    replica = PluginStore(engines[1], clock)
    await replica.load()
    assert replica.require("durable").status == REVOKED
    assert replica.is_revoked_serial(0xBEEF)


async def test_reapproval_revokes_the_previous_identity(engines: list[sa.Engine]) -> None:
    store = PluginStore(engines[0], ManualClock())
    await _approved(store, "renewed", "b" * 64)
    await store.register("renewed", "b" * 64, DIGEST, "127.0.0.1:9", serial=0x10, not_after=FAR)
    await store.record_certificate("plugin/renewed", 0x11, FAR)
    await _approved(store, "renewed", "c" * 64)
    assert store.is_revoked_serial(0x10) and store.is_revoked_serial(0x11)
    replica = PluginStore(engines[1], ManualClock())
    await replica.load()
    assert replica.require("renewed").status == APPROVED
    assert replica.is_revoked_serial(0x10) and replica.is_revoked_serial(0x11)


async def test_i4_one_join_token_admits_one_registration_across_replicas(engines: list[sa.Engine]) -> None:
    clock = ManualClock()
    first = PluginStore(engines[0], clock)
    await _approved(first, "contested", "e" * 64)
    second = PluginStore(engines[1], clock)
    await second.load()

    async def attempt(store: PluginStore, serial: int) -> bool:
        try:
            await store.register("contested", "e" * 64, DIGEST, f"127.0.0.1:{serial}", serial=serial, not_after=FAR)
        except Unauthenticated as exc:
            assert exc.reason == "JOIN_TOKEN_INVALID"
            return False
        return True

    outcomes = await asyncio.gather(*(attempt((first, second)[i % 2], 1000 + i) for i in range(16)))
    assert outcomes.count(True) == 1
    with engines[0].connect() as conn:
        certificates = conn.execute(sa.text("SELECT count(*) FROM certificates")).scalar_one()
        used = conn.execute(sa.text("SELECT used_at FROM join_tokens")).scalars().all()
    assert certificates == 1 and len(used) == 1 and used[0] is not None
    with pytest.raises(Unauthenticated, match="already used") as caught:
        second.check_join_token("contested", "e" * 64)
    assert caught.value.reason == "JOIN_TOKEN_INVALID"


async def test_expired_or_foreign_join_token_is_refused(engines: list[sa.Engine]) -> None:
    clock = ManualClock()
    store = PluginStore(engines[0], clock)
    manifest = manifest_message("expiring")
    expires = int(clock.now().timestamp()) + 60
    await store.approve(manifest, DIGEST, frozenset(), "f" * 64, expires, replace_existing=False)
    with pytest.raises(Unauthenticated, match="another plugin"):
        store.check_join_token("someone-else", "f" * 64)
    clock.advance(61)
    with pytest.raises(Unauthenticated, match="expired"):
        store.check_join_token("expiring", "f" * 64)
    with pytest.raises(Unauthenticated) as caught:
        await store.register("expiring", "f" * 64, DIGEST, "127.0.0.1:9", serial=7, not_after=FAR)
    assert caught.value.reason == "JOIN_TOKEN_INVALID"
    assert store.require("expiring").status == APPROVED


async def test_a_sync_read_before_a_registration_never_undoes_it(
    engines: list[sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A periodic sync that read the APPROVED row just before a registration
    committed must not apply it after the registration's ACTIVE record (the
    plugin would be refused as 'approved' until the next sync)."""
    store = PluginStore(engines[0], ManualClock())
    await _approved(store, "racing", "a" * 64)
    read_subjects = store._read_subjects
    read_done, release = threading.Event(), threading.Event()

    def held_first_read(conn: sa.Connection, subjects: Any) -> Any:
        rows = read_subjects(conn, subjects)
        if not read_done.is_set():
            read_done.set()
            release.wait(10)
        return rows

    monkeypatch.setattr(store, "_read_subjects", held_first_read)
    syncing = asyncio.ensure_future(store.sync())
    assert await asyncio.to_thread(read_done.wait, 10)  # the sync holds the APPROVED row
    registering = asyncio.ensure_future(
        store.register("racing", "a" * 64, DIGEST, "127.0.0.1:9", serial=0x51, not_after=FAR)
    )
    for _ in range(200):  # until the registration has committed
        with engines[1].connect() as conn:
            status = conn.execute(sa.text("SELECT status FROM plugins WHERE plugin_id = 'racing'")).scalar_one()
        if status == ACTIVE:
            break
        await asyncio.sleep(0.02)
    assert status == ACTIVE
    release.set()
    await asyncio.gather(syncing, registering)
    assert store.require("racing").status == ACTIVE
