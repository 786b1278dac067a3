"""Identity of a verified TLS peer, read from its leaf certificate.

The interceptor chain calls `PeerCertificateParser.parse` on every RPC with the
PEM that gRPC puts in the auth context. gRPC has already verified the chain and
validity period at the handshake; this module checks what the SPIFFE X.509-SVID
specification requires of a leaf beyond that (gRPC's verification accepts a
leaf that is itself a CA) and extracts the identity. It must never be fed a
certificate that did not come from a verified peer.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from vivified.core.ca._spiffe import SpiffeIdentity, parse_spiffe_id
from vivified.core.errors import Unauthenticated


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the core needs to know about a peer's certificate."""

    identity: SpiffeIdentity
    serial: int
    not_after: dt.datetime


def _invalid(why: str) -> Unauthenticated:
    return Unauthenticated(
        f"peer certificate not accepted: {why}",
        reason="IDENTITY_INVALID",
        domain="vivified.auth",
    )


_USAGE_NAMES = {ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth", ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth"}


def svid_leaf_problem(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> str | None:
    """What makes `cert` no X.509-SVID leaf for `usage` (an extended key usage
    such as clientAuth), or None: basicConstraints present with CA:false,
    keyUsage present with digitalSignature and without keyCertSign or cRLSign,
    and an extendedKeyUsage that includes `usage`."""
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        return "malformed extensions"
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "leaf lacks basicConstraints (CA:false)"
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "leaf lacks keyUsage"
    try:
        extended = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "leaf lacks extendedKeyUsage"
    if constraints.ca:
        return "leaf is a CA (basicConstraints CA:true)"
    if key_usage.key_cert_sign or key_usage.crl_sign:
        return "leaf may sign certificates or CRLs (keyCertSign/cRLSign)"
    if not key_usage.digital_signature:
        return "leaf lacks the digitalSignature key usage"
    if usage not in extended:
        return f"leaf lacks the {_USAGE_NAMES.get(usage, usage.dotted_string)} extended key usage"
    return None


def identity_from_pem(pem: bytes, trust_domain: str) -> PeerCertificate:
    """Parse a PEM client leaf certificate: an X.509-SVID (see
    `svid_leaf_problem`, for clientAuth) with exactly one SPIFFE URI SAN."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise _invalid("not a PEM X.509 certificate") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise _invalid("no subjectAltName extension") from None
    except (ValueError, x509.DuplicateExtension):
        raise _invalid("malformed extensions") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise _invalid(f"expected exactly one URI SAN, found {len(uris)}")
    identity = parse_spiffe_id(uris[0], trust_domain)
    problem = svid_leaf_problem(cert, ExtendedKeyUsageOID.CLIENT_AUTH)
    if problem is not None:
        raise _invalid(problem)
    return PeerCertificate(
        identity=identity,
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )


class PeerCertificateParser:
    """`identity_from_pem` behind a bounded LRU cache keyed by the PEM bytes.

    A hit is a dictionary lookup under a lock (handlers may run on several
    threads). Failures are not cached, so garbage cannot evict real entries.
    """

    def __init__(self, trust_domain: str, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._trust_domain = trust_domain
        self._max_entries = max_entries
        self._cache: OrderedDict[bytes, PeerCertificate] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, pem: bytes) -> PeerCertificate:
        with self._lock:
            hit = self._cache.get(pem)
            if hit is not None:
                self._cache.move_to_end(pem)
                return hit
        parsed = identity_from_pem(pem, self._trust_domain)
        with self._lock:
            # Another thread may have parsed the same PEM meanwhile; keep its
            # object so every caller sees one instance per certificate.
            parsed = self._cache.setdefault(pem, parsed)
            self._cache.move_to_end(pem)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return parsed

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
