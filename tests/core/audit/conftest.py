"""Fixtures for the audit log tests: a SQLite file per test, a checkpoint key,
and a factory for logs driven by a manual clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner
from vivified.core.clock import ManualClock
from vivified.core.db import create_engine_for, sqlite_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "core.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine_for(sqlite_url(db_path))
    yield engine
    engine.dispose()


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "audit-checkpoint.key"


@pytest.fixture
def signer(key_path: Path) -> CheckpointSigner:
    key_path.parent.mkdir(mode=0o700)
    return CheckpointSigner.load_or_create(key_path)


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints.jsonl"


@pytest.fixture
def public_key_path(key_path: Path, signer: CheckpointSigner) -> Path:
    return key_path.with_name(key_path.name + ".pub")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def make_log(
    engine: sa.Engine, clock: ManualClock, signer: CheckpointSigner, checkpoint_path: Path
) -> Callable[..., AuditLog]:
    def make(**overrides: object) -> AuditLog:
        options: dict[str, object] = {
            "clock": clock,
            "signer": signer,
            "checkpoint_path": checkpoint_path,
        }
        options.update(overrides)
        return AuditLog(engine, **options)  # type: ignore[arg-type]

    return make


def _sample(i: int, actor: str = "plugin:email") -> AuditRecord:
    return AuditRecord(
        actor=actor,
        action="/vivified.communication.v1.CommunicationPluginService/SendMessage",
        resource=f"message/{i}",
        decision="deny" if i % 3 == 0 else "allow",
        reason="POLICY_DENIED" if i % 3 == 0 else "",
        rule_id="rule-7" if i % 3 == 0 else "",
        outcome="PERMISSION_DENIED" if i % 3 == 0 else "OK",
        trace_id=f"{i:032x}",
        detail={"n": str(i)},
    )


@pytest.fixture
def sample() -> Callable[..., AuditRecord]:
    """`sample(i)`: a distinct, realistic record."""
    return _sample


@pytest.fixture
def raw_engine(db_path: Path) -> Iterator[sa.Engine]:
    """A second engine on the same file, as an attacker or a fresh reader would
    open it: no schema creation, no shared connection pool."""
    engine = sa.create_engine(sqlite_url(db_path))
    yield engine
    engine.dispose()
