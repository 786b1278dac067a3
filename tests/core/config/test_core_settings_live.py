"""LiveSettings without a core: the effective config follows the overrides
stored in a real database, refused overrides stay refused, listeners hear of
each real change once, and a database that cannot be read leaves the values in
force until the next poll succeeds."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from support.waiting import until
from vivified.core.clock import ManualClock
from vivified.core.config import CoreConfig
from vivified.core.db import plain_engine, upgrade
from vivified.core.settings import (
    LiveSettings,
    OverrideStore,
    apply_overrides,
    read_overrides,
)

ADMIN = "operator:admin"


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vivified.core.settings._live"]


@pytest.fixture
def engines() -> Iterator[list[sa.Engine]]:
    made: list[sa.Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _engine(url: str, engines: list[sa.Engine]) -> sa.Engine:
    engines.append(plain_engine(url))
    return engines[-1]


def _live(
    tmp_path: pathlib.Path, url: str, engines: list[sa.Engine], *, interval: float = 60.0
) -> tuple[LiveSettings, OverrideStore]:
    engine = _engine(url, engines)
    store = OverrideStore(engine, ManualClock())
    base = CoreConfig(data_dir=tmp_path, setting_sources=(("event_max_attempts", "flag"),))
    return LiveSettings(base, store, apply_overrides(base, read_overrides(engine)), interval=interval), store


@pytest.mark.asyncio
async def test_refresh_applies_changes_and_reports_whether_any_changed(
    tmp_path: pathlib.Path, migrated_database_url: str, caplog: pytest.LogCaptureFixture, engines: list[sa.Engine]
) -> None:
    live, store = _live(tmp_path, migrated_database_url, engines)
    assert live.current.events.max_attempts == 5 and await live.refresh() is False

    await store.change("event_max_attempts", "9", actor=ADMIN, reason="flaky consumer")
    await store.change("call_rate", "40", actor="user:usr_1", reason="noisy caller")
    assert live.current.events.max_attempts == 5  # stored, not yet re-read
    with caplog.at_level(logging.WARNING, logger="vivified.core.settings._live"):
        assert await live.refresh() is True
    current = live.current
    assert current.events.max_attempts == 9
    assert (current.rate_limit.rate_per_second, current.rate_limit.burst) == (40.0, 80)
    assert dict(current.setting_sources)["event_max_attempts"] == f"database (set by {ADMIN}: flaky consumer)"
    assert live.base.events.max_attempts == 5 and live.base.rate_limit.rate_per_second == 500.0
    logged = [r.getMessage() for r in caplog.records]
    assert f"core setting event_max_attempts changed live: 5 -> 9 (override, by {ADMIN})" in logged
    assert "core setting call_rate changed live: 500.0 -> 40.0 (override, by user:usr_1)" in logged

    assert await live.refresh() is False  # nothing changed
    await store.change("call_rate", "40.0", actor=ADMIN, reason="still noisy")
    assert await live.refresh() is False  # same value: no change
    assert dict(live.current.setting_sources)["call_rate"] == f"database (set by {ADMIN}: still noisy)"

    await store.change("event_max_attempts", None, actor="user:usr_2", reason="consumer fixed")
    await store.change("call_rate", None, actor=ADMIN, reason="quiet again")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vivified.core.settings._live"):
        assert await live.refresh() is True  # as a poll: who cleared each comes from history
    assert live.current.events.max_attempts == 5
    assert dict(live.current.setting_sources)["event_max_attempts"] == "flag"  # the lower layer again
    assert "call_rate" not in dict(live.current.setting_sources)
    assert [r.getMessage() for r in caplog.records] == [
        "core setting event_max_attempts changed live: 9 -> 5 (override cleared, by user:usr_2)",
        f"core setting call_rate changed live: 40.0 -> 500.0 (override cleared, by {ADMIN})",
    ]


@pytest.mark.asyncio
async def test_refused_override_stays_refused_and_reported(
    tmp_path: pathlib.Path, migrated_database_url: str, caplog: pytest.LogCaptureFixture, engines: list[sa.Engine]
) -> None:
    live, store = _live(tmp_path, migrated_database_url, engines)
    # Written behind the service's back (the service refuses both).
    await store.change("leaf_ttl_seconds", "3", actor=ADMIN, reason="too short")
    await store.change("trust_domain", "evil.example", actor=ADMIN, reason="bootstrap key")
    with caplog.at_level(logging.ERROR, logger="vivified.core.settings._live"):
        assert await live.refresh() is False
    assert live.current.leaf_ttl_seconds == 3600 and live.current.trust_domain == "vivified.local"
    assert "at least 10" in live.applied.refused["leaf_ttl_seconds"]
    assert "is a bootstrap or security setting" in live.applied.refused["trust_domain"]
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == [
        "runtime override of leaf_ttl_seconds not applied",
        "runtime override of trust_domain not applied",
    ]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="vivified.core.settings._live"):
        await live.refresh()
    assert caplog.records == []  # reported when first refused, not at every poll

    # An applied override replaced by one the core refuses: the lower layer applies again.
    await store.change("leaf_ttl_seconds", None, actor=ADMIN, reason="start over")
    await store.change("event_max_backlog", "500", actor=ADMIN, reason="small disk")
    assert await live.refresh() is True and live.current.events.max_backlog == 500
    await store.change("event_max_backlog", "0", actor="user:usr_3", reason="no backlog")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vivified.core.settings._live"):
        assert await live.refresh() is True
    assert live.current.events.max_backlog == 100_000 and "event_max_backlog" in live.applied.refused
    assert _records(caplog)[-1] == (
        "core setting event_max_backlog changed live: 500 -> 100000 (override refused, by user:usr_3)"
    )


@pytest.mark.asyncio
async def test_poll_picks_up_another_writer_and_survives_a_database_failure(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, engines: list[sa.Engine]
) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'vivified.db'}"
    upgrade(_engine(url, engines))
    live, _ = _live(tmp_path, url, engines, interval=0.05)
    writer = _engine(url, engines)
    other = OverrideStore(writer, ManualClock())  # another replica's writer
    live.start()
    try:
        await other.change("event_ack_timeout", "7.5", actor=ADMIN, reason="slow consumer")
        await until(lambda: live.current.events.ack_timeout_seconds == 7.5, timeout=5)

        # The database cannot be read: its table is gone.
        caplog.clear()
        with writer.begin() as conn:
            conn.execute(sa.text("ALTER TABLE core_setting_overrides RENAME TO parked"))
        with caplog.at_level(logging.WARNING, logger="vivified.core.settings._live"):
            await until(lambda: len(_records(caplog)) >= 2, timeout=5)  # polled and failed at least twice
        assert all(
            "runtime overrides not re-read (keeping the values in force" in message
            and "no such table: core_setting_overrides" in message
            for message in _records(caplog)
        )
        assert live.current.events.ack_timeout_seconds == 7.5  # neither crashed nor fell back to the default
        assert live.applied.overrides["event_ack_timeout"].value == "7.5"

        with writer.begin() as conn:
            conn.execute(sa.text("ALTER TABLE parked RENAME TO core_setting_overrides"))
        await other.change("event_ack_timeout", "12", actor=ADMIN, reason="slower")
        await until(lambda: live.current.events.ack_timeout_seconds == 12.0, timeout=5)  # retried and recovered
    finally:
        await live.stop()
    await asyncio.sleep(0.15)
    await other.change("event_ack_timeout", "3", actor=ADMIN, reason="after stop")
    await asyncio.sleep(0.15)
    assert live.current.events.ack_timeout_seconds == 12.0
