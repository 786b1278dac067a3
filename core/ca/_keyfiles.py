"""Private keys on disk: written atomically with mode 0600, refused when exposed.

A CA key that other local users can read is a compromised CA, so the core
refuses to start with one (docs/security.md K1) instead of quietly tightening the
mode: somebody may already have copied it, and the operator must know.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from vivified.core.ca._keys import SigningKey
from vivified.core.errors import FailedPrecondition

_MAX_KEY_FILE_BYTES = 64 * 1024
_DOMAIN = "vivified.ca"


class KeyFileError(FailedPrecondition):
    """A key file is missing, unreadable, malformed or insecure; the core must not start."""

    def __init__(self, message: str, *, reason: str = "KEY_FILE_INSECURE") -> None:
        super().__init__(message, reason=reason, domain=_DOMAIN)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` via an exclusive temp file in the same directory and a rename.

    Readers never see a partly written file, and the file never exists, even
    for an instant, with a mode wider than `mode`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Store `key` as unencrypted PKCS#8 PEM, mode 0600, atomically."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(path, pem, 0o600)


def _check_file(path: Path, info: os.stat_result, expected_uid: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file", reason="KEY_FILE_INVALID")
    if info.st_uid != expected_uid:
        raise KeyFileError(
            f"key file {path} is owned by uid {info.st_uid}, not by uid {expected_uid} "
            f"that runs the core; fix: chown {expected_uid} {path} && chmod 600 {path}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has mode {mode:04o}, readable or writable by group or others; "
            f"fix: chmod 600 {path} (and replace the key if others may have read it)"
        )


def _read_checked(path: Path, expected_uid: int) -> bytes:
    try:
        # O_NONBLOCK: a FIFO planted at the key path must not hang start-up;
        # it is then refused as not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist", reason="KEY_FILE_MISSING") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be opened: {exc.strerror}", reason="KEY_FILE_UNREADABLE") from None
    try:
        # fstat on the open descriptor: the file checked is the file read.
        _check_file(path, os.fstat(fd), expected_uid)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is larger than 64 KiB", reason="KEY_FILE_INVALID")
    return data


def read_secure_file(path: Path) -> bytes:
    """Read a secret file (≤ 64 KiB) owned by this process's user with mode 0600,
    refusing it (KeyFileError) otherwise."""
    return _read_checked(Path(path), os.geteuid())


def load_private_key(path: Path, *, expected_uid: int | None = None) -> SigningKey:
    """Load an unencrypted PEM private key, refusing files other users could read or write.

    `expected_uid` defaults to the effective uid of this process.
    """
    path = Path(path)
    uid = os.geteuid() if expected_uid is None else expected_uid
    data = _read_checked(path, uid)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"key file {path} is not an unencrypted PEM private key ({type(exc).__name__})",
            reason="KEY_FILE_INVALID",
        ) from None
    if not isinstance(key, SigningKey):
        raise KeyFileError(
            f"key file {path} holds a {type(key).__name__}; a CA key must be EC, Ed25519 or RSA",
            reason="KEY_FILE_INVALID",
        )
    return key
