"""Loading and checking CA material (certificates and keys) before the CA uses it.

Every check here guards against starting a CA that would issue certificates
nobody can verify, or that belongs to somebody else: wrong key for the
certificate, an issuing CA the root did not sign, a CA of another trust
domain, a CA outside its validity period.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from vivified.core.ca._keys import SigningKey
from vivified.core.errors import FailedPrecondition

_MAX_CERT_FILE_BYTES = 64 * 1024


class CAError(FailedPrecondition):
    """The CA's material is missing, inconsistent or expired; the core must not start."""

    def __init__(self, message: str, *, reason: str = "CA_INVALID") -> None:
        super().__init__(message, reason=reason, domain="vivified.ca")


def load_certificate_file(path: Path) -> x509.Certificate:
    """Read a file holding exactly one PEM certificate."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_CERT_FILE_BYTES + 1)
    except OSError as exc:
        raise CAError(f"certificate file {path} cannot be read: {exc.strerror}") from None
    if len(data) > _MAX_CERT_FILE_BYTES:
        raise CAError(f"certificate file {path} is larger than 64 KiB")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CAError(f"certificate file {path} holds no valid PEM certificate") from None
    if len(certs) != 1:
        raise CAError(f"certificate file {path} must hold exactly one certificate, found {len(certs)}")
    return certs[0]


def _spki(key_owner: x509.Certificate | SigningKey) -> bytes:
    public = key_owner.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _require_ca(cert: x509.Certificate, role: str) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        raise CAError(f"{role} certificate has no usable basicConstraints extension") from None
    if not constraints.ca:
        raise CAError(f"{role} certificate is not a CA certificate (basicConstraints CA:false)")


def _require_trust_domain(cert: x509.Certificate, role: str, trust_domain: str) -> None:
    # Externally provided CAs may carry no SPIFFE SAN at all; only a SAN that
    # names a different trust domain is a sure sign of mixed-up material.
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    if uris and f"spiffe://{trust_domain}" not in uris:
        raise CAError(f"{role} certificate belongs to {', '.join(uris)}, not to trust domain {trust_domain!r}")


def _require_signed_by(cert: x509.Certificate, issuer: x509.Certificate, failure: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise CAError(failure) from None


def _require_current(cert: x509.Certificate, role: str, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CAError(
            f"{role} certificate is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(now {now.isoformat()}); check the system clock",
            reason="CA_NOT_YET_VALID",
        )
    if now >= cert.not_valid_after_utc:
        raise CAError(
            f"{role} certificate expired at {cert.not_valid_after_utc.isoformat()}; "
            "issue a new issuing CA (or root) before starting the core",
            reason="CA_EXPIRED",
        )


def verify_ca_material(
    *,
    root_cert: x509.Certificate,
    issuing_cert: x509.Certificate,
    issuing_key: SigningKey,
    root_key: SigningKey | None,
    trust_domain: str,
    now: dt.datetime,
) -> None:
    """Raise CAError unless the material forms a usable two-level CA right now."""
    _require_ca(root_cert, "root")
    _require_ca(issuing_cert, "issuing CA")
    _require_signed_by(root_cert, root_cert, "root certificate is not self-signed")
    _require_signed_by(issuing_cert, root_cert, "issuing CA certificate does not chain to the root certificate")
    if _spki(issuing_key) != _spki(issuing_cert):
        raise CAError("issuing CA key does not match the issuing CA certificate")
    if root_key is not None and _spki(root_key) != _spki(root_cert):
        raise CAError("root key does not match the root certificate")
    for cert, role in ((root_cert, "root"), (issuing_cert, "issuing CA")):
        _require_trust_domain(cert, role, trust_domain)
        _require_current(cert, role, now)
