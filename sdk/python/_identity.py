"""The plugin's key pair, its CSR, and the certificate the core issues for it.

A fresh EC P-256 key is made for every registration and every renewal; the
private key never leaves the process. The CSR carries only the subject CN
(the plugin id) and proof of possession: names, usages and lifetime come from
the core's policy, so the SDK checks what came back instead of asking for it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vivified.sdk._errors import SDK_DOMAIN, VivifiedSDKError


@dataclass(frozen=True)
class KeyAndCsr:
    """A new private key (PEM, PKCS#8) and a CSR for its public key."""

    key: ec.EllipticCurvePrivateKey
    key_pem: bytes
    csr_pem: bytes


def new_key_and_csr(plugin_id: str) -> KeyAndCsr:
    """Generate an EC P-256 key and a CSR with subject CN = plugin id and no SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, plugin_id)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyAndCsr(key=key, key_pem=key_pem, csr_pem=csr.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate chain the core issued, with the key it certifies."""

    chain_pem: bytes
    key_pem: bytes
    leaf: x509.Certificate
    received_at: dt.datetime
    """When the SDK received the certificate (its own clock)."""

    @property
    def leaf_pem(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.PEM)

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    def renew_time(self, fraction: float) -> dt.datetime:
        """When `fraction` of the certificate's usable lifetime has passed.

        The lifetime counts from when the certificate was received, not from
        notBefore: the core backdates notBefore to tolerate clock skew, and a
        short-lived certificate measured from there could be "due" at once."""
        start = max(self.not_before, self.received_at)
        return start + (self.not_after - start) * fraction


def _invalid(why: str) -> VivifiedSDKError:
    return VivifiedSDKError(
        f"the core issued an unusable certificate: {why}", reason="ISSUED_CERTIFICATE_INVALID", domain=SDK_DOMAIN
    )


def accept_issued(chain_pem: str, requested: KeyAndCsr, spiffe_id: str, received_at: dt.datetime) -> IssuedCertificate:
    """Check that the issued leaf certifies our key and names exactly `spiffe_id`.

    A mismatch means the response cannot be used (for instance a certificate for
    another key), so it is refused rather than served."""
    return _checked(chain_pem.encode(), requested.key, requested.key_pem, spiffe_id, received_at)


def load_issued(chain_pem: bytes, key_pem: bytes, spiffe_id: str, received_at: dt.datetime) -> IssuedCertificate:
    """A stored key and certificate, held to the same checks as a fresh one
    (`accept_issued`): the leaf certifies the key and names exactly `spiffe_id`.
    Raises VivifiedSDKError (ISSUED_CERTIFICATE_INVALID) otherwise."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise _invalid("the stored private key cannot be read") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _invalid("the stored private key is not an EC key")
    return _checked(chain_pem, key, key_pem, spiffe_id, received_at)


def _checked(
    chain_pem: bytes, key: ec.EllipticCurvePrivateKey, key_pem: bytes, spiffe_id: str, received_at: dt.datetime
) -> IssuedCertificate:
    try:
        leaf = x509.load_pem_x509_certificate(chain_pem)
    except ValueError:
        raise _invalid("not a PEM certificate chain") from None
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise _invalid("it certifies another public key")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise _invalid("no subjectAltName") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [spiffe_id]:
        raise _invalid(f"expected the single URI SAN {spiffe_id}, found {uris}")
    return IssuedCertificate(chain_pem=chain_pem, key_pem=key_pem, leaf=leaf, received_at=received_at)


CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


def svid_problem(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> str | None:
    """Why `cert` is no SPIFFE X.509-SVID leaf for `usage` (CLIENT_AUTH or
    SERVER_AUTH), or None. A leaf that chains to the core's CA is not enough:
    the SVID rules also require CA:false, the digitalSignature key usage and
    neither keyCertSign nor cRLSign, and the extended key usage for its role.
    (The core applies the same rules to the certificates plugins present.)"""
    try:
        ext = cert.extensions
        constraints = ext.get_extension_for_class(x509.BasicConstraints).value
        key_usage = ext.get_extension_for_class(x509.KeyUsage).value
        extended = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "leaf lacks basicConstraints, keyUsage or extendedKeyUsage"
    except (ValueError, x509.DuplicateExtension):
        return "malformed extensions"
    role = "serverAuth" if usage == SERVER_AUTH else "clientAuth"
    problems = {
        "leaf is a CA (basicConstraints CA:true)": constraints.ca,
        "leaf may sign certificates or CRLs": key_usage.key_cert_sign or key_usage.crl_sign,
        "leaf lacks the digitalSignature key usage": not key_usage.digital_signature,
        f"leaf lacks the {role} extended key usage": usage not in extended,
    }
    return next((why for why, bad in problems.items() if bad), None)


def svid_uri(pem: bytes, usage: x509.ObjectIdentifier) -> str | None:
    """The only URI SAN of a PEM certificate that is an X.509-SVID leaf for
    `usage`, or None (unparsable, no SAN, several, or not an SVID)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension):
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or svid_problem(cert, usage) is not None:
        return None
    return uris[0]
