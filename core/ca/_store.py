"""The CA directory on disk: find existing material or create a new two-level CA.

Layout (directory mode 0700)::

    root.crt     self-signed root, pathlen 1
    root.key     root key (may be moved offline once the issuing CA exists)
    issuing.crt  issuing CA signed by the root, pathlen 0
    issuing.key  key that signs every leaf
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vivified.core.ca._build import build_issuing, build_root
from vivified.core.ca._config import CAConfig
from vivified.core.ca._keyfiles import atomic_write, load_private_key, write_private_key
from vivified.core.ca._keys import SigningKey, new_private_key
from vivified.core.ca._material import CAError, load_certificate_file
from vivified.core.ca._serial import RandomBytes, random_serial
from vivified.core.clock import Clock

_FILES = ("root.crt", "root.key", "issuing.crt", "issuing.key")
_REQUIRED = ("root.crt", "issuing.crt", "issuing.key")


@dataclass(frozen=True, slots=True)
class CAMaterial:
    """Certificates and keys of a CA, not yet checked for consistency."""

    root_cert: x509.Certificate
    issuing_cert: x509.Certificate
    issuing_key: SigningKey
    root_key: SigningKey | None


def load_or_create_material(directory: Path, config: CAConfig, clock: Clock, random_bytes: RandomBytes) -> CAMaterial:
    """Read the CA files in `directory`; create them all if none exists."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    present = {name for name in _FILES if (directory / name).exists()}
    if not present:
        return create_material(directory, config, clock, random_bytes)
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise CAError(
            f"CA directory {directory} is incomplete: {', '.join(missing)} missing; "
            "restore the files, or remove the directory to create a new CA "
            "(every certificate issued so far then stops being trusted)",
            reason="CA_INCOMPLETE",
        )
    return CAMaterial(
        root_cert=load_certificate_file(directory / "root.crt"),
        issuing_cert=load_certificate_file(directory / "issuing.crt"),
        issuing_key=load_private_key(directory / "issuing.key"),
        root_key=load_private_key(directory / "root.key") if "root.key" in present else None,
    )


def create_material(directory: Path, config: CAConfig, clock: Clock, random_bytes: RandomBytes) -> CAMaterial:
    """A new root and issuing CA written to `directory` (which must exist)."""
    now = clock.now()
    not_before = now - config.clock_skew
    root_key, issuing_key = new_private_key(), new_private_key()
    root_cert = build_root(
        key=root_key,
        trust_domain=config.trust_domain,
        serial=random_serial(random_bytes),
        not_before=not_before,
        not_after=now + config.root_ttl,
    )
    issuing_cert = build_issuing(
        key=issuing_key,
        root_cert=root_cert,
        root_key=root_key,
        trust_domain=config.trust_domain,
        serial=random_serial(random_bytes),
        not_before=not_before,
        not_after=min(now + config.issuing_ttl, root_cert.not_valid_after_utc),
    )
    # issuing.crt goes last: with the other required files, its presence marks
    # a complete directory, so a crash part-way is reported, not half-loaded.
    write_private_key(directory / "root.key", root_key)
    write_private_key(directory / "issuing.key", issuing_key)
    atomic_write(directory / "root.crt", root_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    atomic_write(directory / "issuing.crt", issuing_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CAMaterial(root_cert=root_cert, issuing_cert=issuing_cert, issuing_key=issuing_key, root_key=root_key)
