"""Checks on a plugin's certificate signing request (docs/security.md I3).

The CA takes only the public key from a CSR; subject, SANs, key usage and
validity of the issued certificate come from core policy. The CSR is still
refused when it *asks* for something the plugin must not have (a CA
certificate, somebody else's identity, extra names), so a misbehaving or
compromised plugin is noticed at registration instead of silently trimmed.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from vivified.core.ca._keys import SubjectPublicKey, as_subject_key, public_key_problem
from vivified.core.errors import InvalidArgument

MAX_CSR_PEM_BYTES = 16 * 1024


def _invalid(why: str) -> InvalidArgument:
    return InvalidArgument(f"CSR refused: {why}", reason="CSR_INVALID", domain="vivified.registry")


def _describe(name: x509.GeneralName) -> str:
    value = getattr(name, "value", name)
    return f"{type(name).__name__} {str(value)[:120]!r}"


def _check_extensions(csr: x509.CertificateSigningRequest, spiffe_id: str) -> None:
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise _invalid("its requested extensions are malformed or duplicated") from None
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise _invalid("it requests basicConstraints CA:true; plugin certificates are never CAs")
        if isinstance(value, x509.SubjectAlternativeName):
            for name in value:
                if not (isinstance(name, x509.UniformResourceIdentifier) and name.value == spiffe_id):
                    raise _invalid(
                        f"it requests subjectAltName {_describe(name)}; the only SAN allowed "
                        f"in the CSR is {spiffe_id!r}"
                    )


def validate_csr(csr_pem: bytes, *, spiffe_id: str) -> SubjectPublicKey:
    """Return the CSR's public key if the CSR is acceptable for `spiffe_id`.

    Raises InvalidArgument(reason="CSR_INVALID") naming the first problem found.
    """
    if len(csr_pem) > MAX_CSR_PEM_BYTES:
        raise _invalid(f"it is {len(csr_pem)} bytes; the limit is {MAX_CSR_PEM_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise _invalid("it is not a PEM-encoded PKCS#10 certificate signing request") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise _invalid("its public key cannot be parsed or uses an unsupported algorithm") from None
    problem = public_key_problem(public_key)
    subject_key = as_subject_key(public_key)
    if problem is not None or subject_key is None:
        raise _invalid(problem or "its key type is not supported")
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signature_ok = False
    if not signature_ok:
        raise _invalid("its signature does not verify with its own public key")
    _check_extensions(csr, spiffe_id)
    return subject_key
