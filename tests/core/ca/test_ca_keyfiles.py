"""Private key files: created 0600 atomically, refused when exposed (docs/security.md K1)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from vivified.core.ca import KeyFileError, load_private_key, new_private_key, write_private_key
from vivified.core.errors import FailedPrecondition


def _spki(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    return bytes(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture
def open_umask() -> Iterator[None]:
    # The file mode must not depend on a restrictive umask doing the work.
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_written_key_is_mode_0600_and_round_trips(tmp_path: Path) -> None:
    key = new_private_key()
    path = tmp_path / "issuing.key"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert _spki(load_private_key(path)) == _spki(key)


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, new_private_key())
    second = new_private_key()
    write_private_key(path, second)
    assert _spki(load_private_key(path)) == _spki(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o610, 0o601, 0o777])
def test_k1_key_file_readable_or_writable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "issuing.key"
    write_private_key(path, new_private_key())
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as caught:
        load_private_key(path)
    error = caught.value
    assert isinstance(error, FailedPrecondition)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "KEY_FILE_INSECURE"
    assert str(path) in error.message
    assert f"{mode:04o}" in error.message
    assert f"chmod 600 {path}" in error.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, new_private_key())
    os.chmod(path, mode)
    load_private_key(path)


def test_key_file_of_another_uid_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, new_private_key())
    with pytest.raises(KeyFileError, match="owned by uid") as caught:
        load_private_key(path, expected_uid=os.geteuid() + 1)
    assert caught.value.reason == "KEY_FILE_INSECURE"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_key_file_chowned_to_another_user_refused_by_default(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, new_private_key())
    os.chown(path, 54321, -1)
    with pytest.raises(KeyFileError, match="owned by uid 54321"):
        load_private_key(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_private_key(tmp_path / "absent.key")
    assert caught.value.reason == "KEY_FILE_MISSING"


def _write_0600(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def test_garbage_encrypted_and_non_signing_keys_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    _write_0600(garbage, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    encrypted = tmp_path / "encrypted.key"
    _write_0600(
        encrypted,
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    )
    exchange_only = tmp_path / "x25519.key"
    write_private_key(exchange_only, x25519.X25519PrivateKey.generate())
    huge = tmp_path / "huge.key"
    _write_0600(huge, b"A" * (64 * 1024 + 1))
    for path in (garbage, encrypted, exchange_only, huge):
        with pytest.raises(KeyFileError) as caught:
            load_private_key(path)
        assert caught.value.reason == "KEY_FILE_INVALID", path
        assert str(path) in caught.value.message


def test_directory_in_place_of_a_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "dir.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(path)


def test_fifo_in_place_of_a_key_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(path)
