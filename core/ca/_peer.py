"""Identity of a verified TLS peer, read from its leaf certificate.

The interceptor chain calls `PeerCertificateParser.parse` on every RPC with the
PEM that gRPC puts in the auth context. gRPC has already verified the chain and
validity period at the handshake, so this module only extracts the identity;
it must never be fed a certificate that did not come from a verified peer.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass

from cryptography import x509
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


def identity_from_pem(pem: bytes, trust_domain: str) -> PeerCertificate:
    """Parse a PEM leaf certificate that carries exactly one SPIFFE URI SAN."""
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
