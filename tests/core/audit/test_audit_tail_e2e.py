"""The audit log's tail with real core processes, on SQLite and PostgreSQL.

The attacker can write the database (as its owner, so on PostgreSQL the
append-only trigger is no obstacle) and knows the hash format, but holds no
checkpoint key. A record appended after a clean stop, even with a correctly
computed hash chained onto the last one, must be reported by `vivified audit
verify`, must stop the next `vivified core` (which must not chain onto it),
and may be started over only with `--accept-audit-tampering SEQ`, which is
the first audit record and a SecurityAlert. A crash leaves a tail no
checkpoint covers; the next start verifies it and names it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from support.events import SECURITY_ALERT, Inbox, event_plugin
from support.processes import clean_env, core_running, start_core, stop_process
from support.waiting import until
from vivified.core.audit import AuditRecord, StoredRecord, audit_table
from vivified.core.db import plain_engine
from vivified.events.v1.canonical_pb2 import SecurityAlert

pytestmark = pytest.mark.e2e

PORTS = ("--listen", "127.0.0.1:0", "--bootstrap", "127.0.0.1:0", "--metrics", "127.0.0.1:0")


def _flags(url: str) -> tuple[str, ...]:
    return ("--database-url", url)


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def _verify(data_dir: pathlib.Path, url: str) -> subprocess.CompletedProcess[str]:
    return _run("audit", "--data-dir", str(data_dir), "--database-url", url, "verify")


def _run_and_stop(data_dir: pathlib.Path, url: str, *flags: str) -> None:
    core = start_core(data_dir, *_flags(url), *flags)
    assert stop_process(core.process) == 0, core.log()


def _records(url: str) -> list[StoredRecord]:
    engine = plain_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).mappings().all()
        return [StoredRecord.from_row(row) for row in rows]
    finally:
        engine.dispose()


def _write(url: str, statement: sa.Executable) -> None:
    """As the database owner: on PostgreSQL the append-only trigger is switched off first."""
    engine = plain_engine(url)
    try:
        with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            conn.execute(statement)
            if postgres:
                conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        engine.dispose()


def _forged(seq: int, prev_hash: str) -> StoredRecord:
    return StoredRecord.chain(
        AuditRecord(actor="operator:admin", action="plugin.approve", resource="plugin/backdoor"),
        seq=seq,
        time=dt.datetime.now(dt.UTC),
        prev_hash=prev_hash,
    )


def _append_forged(url: str) -> StoredRecord:
    """A record chained onto the head with a correct hash: the chain alone cannot tell."""
    head = _records(url)[-1]
    forged = _forged(head.seq + 1, head.hash)
    _write(url, audit_table.insert().values(**forged.as_row()))
    return forged


def _checkpoints(data_dir: pathlib.Path) -> list[dict[str, object]]:
    path = data_dir / "audit" / "checkpoints.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _alert_subscriber(data_dir: pathlib.Path, url: str, directory: pathlib.Path) -> Inbox:
    """A plugin with a durable SecurityAlert subscription; returns what it received."""
    inbox = Inbox()
    with core_running(data_dir, *_flags(url)) as core:
        watcher = await event_plugin(core, directory, "alert-sub", subscribes=[SECURITY_ALERT])
        try:
            await watcher.subscribe("alerts", {SecurityAlert: inbox}).opened()
        finally:
            await watcher.stop()
    return inbox


@pytest.mark.serial  # needs a clean stop within stop_process's 15 s; under the parallel pass a PostgreSQL core's stop has overrun it
@pytest.mark.asyncio
async def test_e1_record_after_clean_stop_is_refused_until_accepted(
    tmp_path: pathlib.Path, migrated_database_url: str
) -> None:
    url, data_dir = migrated_database_url, tmp_path / "data"
    # A durable subscription to SecurityAlert exists before anything goes wrong.
    await _alert_subscriber(data_dir, url, tmp_path)
    assert _verify(data_dir, url).returncode == 0
    forged = _append_forged(url)

    # verify: the forged record is tampering, named by its seq.
    verified = _verify(data_dir, url)
    assert verified.returncode == 1, verified.stdout
    assert f"first bad sequence {forged.seq}:" in verified.stdout
    assert "final checkpoint" in verified.stdout
    assert _checkpoints(data_dir)[-1]["final"] is True

    # The core refuses to start on it, names the seq, and appends nothing.
    checkpoints_before = (data_dir / "audit" / "checkpoints.jsonl").read_bytes()
    refused = _run("core", "--data-dir", str(data_dir), *PORTS, *_flags(url))
    assert refused.returncode == 1
    assert f"audit log tampered: first bad sequence {forged.seq}:" in refused.stderr
    assert f"--accept-audit-tampering {forged.seq}" in refused.stderr
    assert _records(url)[-1] == forged
    assert (data_dir / "audit" / "checkpoints.jsonl").read_bytes() == checkpoints_before

    # Accepting another seq than the one named is no acceptance.
    wrong = _run("core", "--data-dir", str(data_dir), *PORTS, *_flags(url), "--accept-audit-tampering", "1")
    assert wrong.returncode == 1 and f"first bad sequence {forged.seq}:" in wrong.stderr
    assert _records(url)[-1] == forged

    # Accepted explicitly: it starts, the acceptance is its first record, and
    # the subscriber gets the SecurityAlert it names.
    inbox = Inbox()
    with core_running(data_dir, *_flags(url), "--accept-audit-tampering", str(forged.seq)) as core:
        after = [r for r in _records(url) if r.seq > forged.seq]
        assert [r.action for r in after[:2]] == ["audit.tampering_accepted", "core.start"]
        accepted = after[0]
        assert accepted.reason == "AUDIT_TAIL_TAMPERED" and accepted.resource == f"audit/{forged.seq}"
        detail = json.loads(accepted.detail or "{}")
        assert detail["first_bad_seq"] == str(forged.seq)
        watcher = await event_plugin(core, tmp_path, "alert-sub", subscribes=[SECURITY_ALERT])
        try:
            await watcher.subscribe("alerts", {SecurityAlert: inbox}).opened()
            await until(lambda: bool(inbox.received), 15, "the tampering alert")
        finally:
            await watcher.stop()
    alerts = [payload for payload, _ in inbox.received]
    assert [(a.kind, a.alert_id) for a in alerts] == [("audit_tampering_accepted", detail["alert_id"])]  # type: ignore[attr-defined]
    assert alerts[0].details["first_bad_seq"] == str(forged.seq)  # type: ignore[attr-defined]

    # Starting over it does not launder it: verify still names the forged record.
    verified = _verify(data_dir, url)
    assert verified.returncode == 1 and f"first bad sequence {forged.seq}:" in verified.stdout


@pytest.mark.serial  # as above: a PostgreSQL core's clean stop has overrun 15 s in the parallel pass
def test_e1_crash_leaves_an_unanchored_tail_the_next_start_verifies_and_names(
    tmp_path: pathlib.Path, migrated_database_url: str
) -> None:
    url, data_dir = migrated_database_url, tmp_path / "data"
    _run_and_stop(data_dir, url)
    core = start_core(data_dir, *_flags(url))
    os.kill(core.process.pid, signal.SIGKILL)
    core.process.wait()
    last = _checkpoints(data_dir)[-1]
    head = _records(url)[-1].seq
    # The restart's anchor, then its core.start record, which no checkpoint covers.
    assert last.get("final") is not True and int(str(last["seq"])) < head

    _run_and_stop(data_dir, url)
    started = next(r for r in _records(url) if r.seq > head)
    assert started.action == "core.start"
    detail = json.loads(started.detail or "{}")
    assert (detail["unanchored_from"], detail["unanchored_to"]) == (str(int(str(last["seq"])) + 1), str(head))
    assert _verify(data_dir, url).returncode == 0


@pytest.mark.serial  # as above: a PostgreSQL core's clean stop has overrun 15 s in the parallel pass
def test_e1_forged_record_mid_chain_is_named_itself(tmp_path: pathlib.Path, migrated_database_url: str) -> None:
    url, data_dir = migrated_database_url, tmp_path / "data"
    for _ in range(3):
        _run_and_stop(data_dir, url)
    records = _records(url)
    assert len(records) >= 4
    target = records[len(records) // 2]
    # Its own hash recomputed and chained onto its predecessor: only the link
    # from its successor is broken.
    forged = _forged(target.seq, records[target.seq - 2].hash)
    values = forged.as_row()
    del values["seq"]
    _write(url, audit_table.update().where(audit_table.c.seq == target.seq).values(**values))

    verified = _verify(data_dir, url)
    assert verified.returncode == 1
    assert f"first bad sequence {target.seq}:" in verified.stdout, verified.stdout
