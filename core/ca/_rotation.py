"""Rotating the root and issuing CA with an overlap, so no certificate in use
stops being trusted.

Three steps, each recorded in `rotation.json` in the CA directory::

    begin       `vivified ca rotate`: a next root and issuing CA are created in
                `next/`; every trust bundle the core hands out (renewals, its
                own listeners, its calls to plugins) holds the current and the
                next root. Leaves are still signed by the current issuing CA.
    switch      at `switch_at` (never sooner than one leaf lifetime after the
                core first saw the rotation, so every plugin has renewed and
                learned the bundle): `next/` becomes the CA; the old root stays
                trusted as `previous-root.crt`; new leaves chain to the new root.
    remove      at `remove_at` (never sooner than one leaf lifetime after the
                switch, so every leaf of the old chain has expired): the old root
                is dropped; a leaf of the old chain is refused at the handshake.

The core performs switch and remove (`CARotation.advance`), the CLI only
begins. A crash during the switch is finished at the next load: the plan is
written as `switched` before the files move, and moving is idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vivified.core.ca._config import CAConfig
from vivified.core.ca._keyfiles import atomic_write
from vivified.core.ca._material import CAError, load_certificate_file
from vivified.core.ca._serial import RandomBytes
from vivified.core.ca._store import create_material
from vivified.core.clock import Clock
from vivified.core.errors import FailedPrecondition

PLAN_FILE = "rotation.json"
NEXT_DIR = "next"
PREVIOUS_ROOT = "previous-root.crt"
_MOVED = ("root.key", "issuing.key", "root.crt", "issuing.crt")
_MAX_PLAN_BYTES = 4096

Phase = Literal["distributing", "switched"]


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """Where a rotation stands; times are UTC."""

    phase: Phase
    started_at: dt.datetime
    switch_at: dt.datetime
    """Earliest time the issuing CA switches to the next one."""
    overlap: dt.timedelta
    """How long each of the two overlap windows lasts at least."""
    switched_at: dt.datetime | None = None
    remove_at: dt.datetime | None = None
    """Earliest time the old root is removed (set at the switch)."""

    def to_json(self) -> str:
        def iso(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return json.dumps(
            {
                "phase": self.phase,
                "started_at": iso(self.started_at),
                "switch_at": iso(self.switch_at),
                "overlap_seconds": self.overlap.total_seconds(),
                "switched_at": iso(self.switched_at),
                "remove_at": iso(self.remove_at),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> RotationPlan:
        raw = json.loads(text)

        def when(key: str) -> dt.datetime | None:
            value = raw.get(key)
            return None if value is None else dt.datetime.fromisoformat(str(value))

        phase = raw["phase"]
        started, switch_at = when("started_at"), when("switch_at")
        if phase not in ("distributing", "switched") or started is None or switch_at is None:
            raise ValueError("incomplete rotation plan")
        return cls(
            phase=phase,
            started_at=started,
            switch_at=switch_at,
            overlap=dt.timedelta(seconds=float(raw["overlap_seconds"])),
            switched_at=when("switched_at"),
            remove_at=when("remove_at"),
        )


def read_plan(directory: Path) -> RotationPlan | None:
    """The rotation under way in `directory`, or None."""
    path = Path(directory) / PLAN_FILE
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CAError(f"rotation plan {path} cannot be read: {exc.strerror}") from None
    try:
        if len(data) > _MAX_PLAN_BYTES:
            raise ValueError("too large")
        return RotationPlan.from_json(data.decode())
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CAError(f"rotation plan {path} is malformed", reason="CA_ROTATION_INVALID") from None


def _write_plan(directory: Path, plan: RotationPlan) -> None:
    atomic_write(directory / PLAN_FILE, plan.to_json().encode(), 0o600)


def begin_rotation(
    directory: Path,
    config: CAConfig,
    clock: Clock,
    *,
    overlap: dt.timedelta,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> RotationPlan:
    """Create the next root and issuing CA beside the current ones and record the plan.

    Raises FailedPrecondition CA_ROTATION_IN_PROGRESS when a rotation is under
    way, CA_INCOMPLETE when `directory` holds no CA."""
    directory = Path(directory)
    if overlap <= dt.timedelta(0):
        raise ValueError("the rotation overlap must be positive")
    if not (directory / "issuing.crt").exists():
        raise CAError(f"{directory} holds no CA to rotate", reason="CA_INCOMPLETE")
    current = read_plan(directory)
    if current is not None:
        raise FailedPrecondition(
            f"a CA rotation is already under way (phase {current.phase}); "
            "wait until `vivified ca status` shows it finished",
            reason="CA_ROTATION_IN_PROGRESS",
            domain="vivified.ca",
        )
    next_dir = directory / NEXT_DIR
    if next_dir.exists():  # left by a rotate that crashed before its plan was written
        shutil.rmtree(next_dir)
    next_dir.mkdir(mode=0o700)
    os.chmod(next_dir, 0o700)
    create_material(next_dir, config, clock, random_bytes)
    now = clock.now()
    plan = RotationPlan(phase="distributing", started_at=now, switch_at=now + overlap, overlap=overlap)
    _write_plan(directory, plan)
    return plan


def finish_interrupted_switch(directory: Path) -> None:
    """Complete the file moves of a switch that a crash interrupted (no-op otherwise)."""
    plan = read_plan(directory)
    next_dir = directory / NEXT_DIR
    if plan is None or plan.phase != "switched" or not next_dir.exists():
        return
    for name in _MOVED:
        if (next_dir / name).exists():
            os.replace(next_dir / name, directory / name)
    shutil.rmtree(next_dir)


def switch_files(directory: Path, plan: RotationPlan, now: dt.datetime, min_overlap: dt.timedelta) -> RotationPlan:
    """Make `next/` the CA, keeping the old root as `previous-root.crt`."""
    root = (directory / "root.crt").read_bytes()
    atomic_write(directory / PREVIOUS_ROOT, root, 0o644)
    switched = replace(plan, phase="switched", switched_at=now, remove_at=now + max(plan.overlap, min_overlap))
    _write_plan(directory, switched)
    finish_interrupted_switch(directory)
    return switched


def remove_previous(directory: Path) -> None:
    """Drop the old root and end the rotation."""
    (directory / PREVIOUS_ROOT).unlink(missing_ok=True)
    (directory / PLAN_FILE).unlink(missing_ok=True)


def extra_roots(directory: Path) -> tuple[x509.Certificate, ...]:
    """Roots trusted beside the current one: the next (distributing) or the previous (switched)."""
    plan = read_plan(directory)
    if plan is None:
        return ()
    if plan.phase == "distributing":
        return (load_certificate_file(directory / NEXT_DIR / "root.crt"),)
    previous = directory / PREVIOUS_ROOT
    return (load_certificate_file(previous),) if previous.exists() else ()


def pem_bundle(certs: tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
