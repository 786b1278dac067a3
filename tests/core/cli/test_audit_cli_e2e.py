"""`vivified audit verify|tail` on the audit log a real core wrote."""

from __future__ import annotations

import pathlib

import pytest
import sqlalchemy as sa

from support.clients import admitted_plugin
from support.processes import core_running, run_vivified

pytestmark = pytest.mark.e2e


@pytest.mark.asyncio
async def test_verify_passes_then_names_the_first_tampered_sequence(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    with core_running(data) as core:
        await admitted_plugin(core, "audited")
    # The core stopped gracefully: its final checkpoint covers every record.
    ok = run_vivified("audit", "--data-dir", str(data), "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit log OK" in ok.stdout

    tail = run_vivified("audit", "--data-dir", str(data), "tail", "-n", "5")
    assert "/vivified.registry.v1.PluginRegistryService/Register" in tail.stdout
    assert "operator:admin" in tail.stdout

    engine = sa.create_engine(f"sqlite:///{data / 'vivified.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET decision = 'deny' WHERE seq = 2"))
    engine.dispose()
    bad = run_vivified("audit", "--data-dir", str(data), "verify")
    assert bad.returncode == 1
    assert "first bad sequence 2" in bad.stdout


@pytest.mark.asyncio
async def test_verify_detects_tail_truncation(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    with core_running(data) as core:
        await admitted_plugin(core, "truncated")
    engine = sa.create_engine(f"sqlite:///{data / 'vivified.db'}")
    with engine.begin() as conn:
        last = conn.execute(sa.text("SELECT max(seq) FROM audit_log")).scalar_one()
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = :s"), {"s": last})
    engine.dispose()
    bad = run_vivified("audit", "--data-dir", str(data), "verify")
    assert bad.returncode == 1, bad.stdout
    assert "TAMPERED" in bad.stdout


def test_verify_without_a_database_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    result = run_vivified("audit", "--data-dir", str(tmp_path / "none"), "verify")
    assert result.returncode == 1
    assert "no audit database" in result.stdout
