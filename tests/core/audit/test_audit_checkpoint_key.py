"""The checkpoint signing key: created private, refused when exposed."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner, verify
from vivified.core.ca import KeyFileError


def test_key_is_created_0600_with_public_key_beside_it(tmp_path: Path) -> None:
    key_path = tmp_path / "checkpoint.key"
    signer = CheckpointSigner.load_or_create(key_path)

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    public = serialization.load_pem_public_key((tmp_path / "checkpoint.key.pub").read_bytes())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert signer.public_key_pem() == (tmp_path / "checkpoint.key.pub").read_bytes()
    assert b"PRIVATE" not in (tmp_path / "checkpoint.key.pub").read_bytes()


def test_key_is_reloaded_not_replaced(tmp_path: Path) -> None:
    key_path = tmp_path / "checkpoint.key"
    first = CheckpointSigner.load_or_create(key_path)
    (tmp_path / "checkpoint.key.pub").write_bytes(b"stale")

    second = CheckpointSigner.load_or_create(key_path)

    assert second.public_key_pem() == first.public_key_pem()
    assert (tmp_path / "checkpoint.key.pub").read_bytes() == first.public_key_pem()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_path = tmp_path / "checkpoint.key"
    CheckpointSigner.load_or_create(key_path)
    os.chmod(key_path, mode)

    with pytest.raises(KeyFileError) as raised:
        CheckpointSigner.load_or_create(key_path)

    assert str(key_path) in str(raised.value)
    assert f"chmod 600 {key_path}" in str(raised.value)


@pytest.mark.asyncio
async def test_verification_with_another_key_fails(
    make_log: Callable[..., AuditLog],
    sample: Callable[..., AuditRecord],
    engine: sa.Engine,
    checkpoint_path: Path,
    tmp_path: Path,
) -> None:
    log = make_log()
    await log.start()
    await log.append(sample(1))
    await log.close()
    CheckpointSigner.load_or_create(tmp_path / "other.key")

    result = verify(engine, checkpoint_path, tmp_path / "other.key.pub")

    assert not result.ok and "signature" in result.problem
