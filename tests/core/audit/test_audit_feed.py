"""The live feed's per-watcher bound and filter, in process: a watcher that
does not read is cut off once its buffer is full (it never grows, and the
feed never waits for it), and reading on yields what was buffered, then
WatcherTooSlow; filters and the watcher's start seq decide what it gets."""

from __future__ import annotations

import datetime as dt

import pytest

from vivified.core.audit import WatchFilter
from vivified.core.audit._feed import Watcher, WatcherTooSlow
from vivified.core.audit._record import StoredRecord

pytestmark = [pytest.mark.asyncio]


def _record(seq: int, action: str = "/vivified.admin.v1.PluginAdminService/ListPlugins", **fields: str) -> StoredRecord:
    values = {"actor": "user:usr_1", "decision": "allow", "reason": "", "rule_id": "r", "outcome": "OK", **fields}
    return StoredRecord(
        seq=seq,
        time=dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
        action=action,
        resource="",
        trace_id="",
        detail=None,
        prev_hash="",
        hash="",
        **values,
    )


async def test_a_watcher_that_does_not_read_is_cut_off_at_its_buffer() -> None:
    watcher = Watcher(WatchFilter(), buffer=3, after_seq=0)
    for seq in range(1, 100):
        watcher.offer(_record(seq))
    assert watcher.cut_off
    assert [(await watcher.next()).seq for _ in range(3)] == [1, 2, 3]
    with pytest.raises(WatcherTooSlow):
        await watcher.next()


async def test_a_reading_watcher_is_never_cut_off() -> None:
    watcher = Watcher(WatchFilter(), buffer=2, after_seq=0)
    for seq in range(1, 50):
        watcher.offer(_record(seq))
        assert (await watcher.next()).seq == seq
    assert not watcher.cut_off


async def test_filters_and_start_decide_what_a_watcher_gets() -> None:
    watcher = Watcher(
        WatchFilter(decision="deny", outcome="PERMISSION_DENIED", action_prefix="/vivified.admin.v1."),
        buffer=10,
        after_seq=5,
    )
    offered = [
        _record(5, decision="deny", outcome="PERMISSION_DENIED"),  # before the watch began
        _record(6, decision="deny", outcome="PERMISSION_DENIED"),
        _record(7),  # allowed
        _record(8, action="/vivified.identity.v1.AuthService/Login", decision="deny", outcome="PERMISSION_DENIED"),
        _record(9, decision="deny", outcome="UNAUTHENTICATED"),
        _record(10, decision="deny", outcome="PERMISSION_DENIED"),
    ]
    for record in offered:
        watcher.offer(record)
    assert [(await watcher.next()).seq for _ in range(2)] == [6, 10]
    assert WatchFilter(actor="user:usr_2").matches(_record(1)) is False
