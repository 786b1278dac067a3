"""The plugin config store on SQLite and PostgreSQL: values, history in order,
secrets sealed in the row and masked in history, watchers woken."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for
from vivified.core.plugin_config import MASK, PluginConfigStore, SecretsKeyring

pytestmark = pytest.mark.asyncio
CANARY = "CANARY-store-secret-93c1d0"


def _key() -> bytes:
    return bytes((i * 13 + 7) % 256 for i in range(32))


async def test_values_history_and_sealing(migrated_database_url: str) -> None:
    engine = create_engine_for(migrated_database_url)
    try:
        ring = SecretsKeyring([_key()])
        store = PluginConfigStore(engine, ManualClock(), ring)
        wake = store.watch("mailer")
        await store.set("mailer", "port", "25", secret=False, actor="operator:admin", reason="first")
        assert wake.qsize() == 1
        await store.set("mailer", "port", "587", secret=False, actor="user:usr_1", reason="second")
        assert wake.qsize() == 1  # one pending wake-up covers both changes
        await asyncio.wait_for(wake.get(), 1)
        await store.set("mailer", "password", CANARY, secret=True, actor="operator:admin", reason="third")
        await asyncio.wait_for(wake.get(), 1)
        await store.set("other", "port", "1", secret=False, actor="operator:admin", reason="elsewhere")
        assert wake.empty()  # another plugin's change does not wake this watcher
        store.unwatch("mailer", wake)
        await store.set("mailer", "port", "587", secret=False, actor="operator:admin", reason="again")
        assert wake.empty()

        values = await store.values("mailer")
        assert values["port"].value == "587" and values["port"].key_id is None
        sealed = values["password"]
        assert sealed.key_id == ring.primary_id and CANARY not in sealed.value
        assert ring.open("mailer", "password", sealed.key_id, sealed.value) == CANARY

        history = await store.history("mailer", 10)
        assert [(c.key, c.old_value, c.new_value, c.changed_by, c.reason) for c in history] == [
            ("port", "587", "587", "operator:admin", "again"),
            ("password", None, MASK, "operator:admin", "third"),
            ("port", "25", "587", "user:usr_1", "second"),
            ("port", None, "25", "operator:admin", "first"),
        ]
        assert len(await store.history("mailer", 1)) == 1
        with engine.connect() as conn:
            dump = repr(conn.execute(sa.text("SELECT * FROM plugin_config_values")).all())
            dump += repr(conn.execute(sa.text("SELECT * FROM plugin_config_history")).all())
        assert CANARY not in dump
    finally:
        engine.dispose()
