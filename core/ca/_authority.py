"""The core's certificate authority: one root, one issuing CA, short-lived leaves.

Leaves take only the public key from their request; everything else comes
from `CAConfig` and the builders in `_build.py`. The CA's files are handled
by `_store.py`, their consistency checks by `_material.py`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from vivified.core.ca._build import LeafProfile, build_leaf
from vivified.core.ca._config import CAConfig, IssuedCertificate
from vivified.core.ca._csr import validate_csr
from vivified.core.ca._keyfiles import load_private_key
from vivified.core.ca._keys import (
    SigningKey,
    SubjectPublicKey,
    as_subject_key,
    public_key_problem,
)
from vivified.core.ca._material import (
    CAError,
    load_certificate_file,
    verify_ca_material,
)
from vivified.core.ca._serial import RandomBytes, random_serial
from vivified.core.ca._spiffe import (
    core_dns_name,
    core_spiffe_id,
    operator_spiffe_id,
    plugin_dns_name,
    plugin_spiffe_id,
)
from vivified.core.ca._store import load_or_create_material
from vivified.core.clock import Clock
from vivified.core.errors import InvalidArgument

_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """Signs plugin, core and operator certificates with the issuing CA key."""

    def __init__(
        self,
        *,
        root_cert: x509.Certificate,
        issuing_cert: x509.Certificate,
        issuing_key: SigningKey,
        config: CAConfig,
        clock: Clock,
        root_key: SigningKey | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        verify_ca_material(
            root_cert=root_cert,
            issuing_cert=issuing_cert,
            issuing_key=issuing_key,
            root_key=root_key,
            trust_domain=config.trust_domain,
            now=clock.now(),
        )
        self._root_cert = root_cert
        self._issuing_cert = issuing_cert
        self._issuing_key = issuing_key
        self._config = config
        self._clock = clock
        self._random_bytes = random_bytes
        self._root_pem = _pem(root_cert)
        self._issuing_pem = _pem(issuing_cert)

    @classmethod
    def load(
        cls,
        root_cert: Path,
        issuing_cert: Path,
        issuing_key: Path,
        config: CAConfig,
        clock: Clock,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> CertificateAuthority:
        """Load CA material from explicitly configured paths (e.g. mounted secrets)."""
        return cls(
            root_cert=load_certificate_file(root_cert),
            issuing_cert=load_certificate_file(issuing_cert),
            issuing_key=load_private_key(issuing_key),
            config=config,
            clock=clock,
            random_bytes=random_bytes,
        )

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        config: CAConfig,
        clock: Clock,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> CertificateAuthority:
        """Load the CA in `directory`, creating a new root and issuing CA if it holds none."""
        material = load_or_create_material(Path(directory), config, clock, random_bytes)
        return cls(
            root_cert=material.root_cert,
            issuing_cert=material.issuing_cert,
            issuing_key=material.issuing_key,
            root_key=material.root_key,
            config=config,
            clock=clock,
            random_bytes=random_bytes,
        )

    @property
    def trust_domain(self) -> str:
        return self._config.trust_domain

    @property
    def config(self) -> CAConfig:
        return self._config

    @property
    def root_pem(self) -> bytes:
        """The trust anchor every peer verifies against."""
        return self._root_pem

    @property
    def chain_pem(self) -> bytes:
        """The issuing CA certificate, sent after a leaf so peers can build the chain."""
        return self._issuing_pem

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root_cert

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self._issuing_cert

    def issue_plugin_certificate(
        self, plugin_id: str, csr_pem: bytes, *, lifetime: dt.timedelta | None = None
    ) -> IssuedCertificate:
        """Sign a plugin's CSR; identity, names and usages come from policy, the
        lifetime from `lifetime` (the core's current leaf TTL setting) or else
        the CA's configured `leaf_ttl`."""
        if lifetime is not None and lifetime <= dt.timedelta(0):
            raise ValueError("a plugin certificate's lifetime must be positive")
        td = self.trust_domain
        spiffe_id = plugin_spiffe_id(td, plugin_id)
        public_key = validate_csr(csr_pem, spiffe_id=spiffe_id)
        profile = LeafProfile(
            common_name=plugin_id,
            organization="Vivified plugin",
            spiffe_id=spiffe_id,
            dns_names=(plugin_dns_name(td, plugin_id),),
        )
        return self._issue(profile, public_key, lifetime or self._config.leaf_ttl)

    def issue_core_certificate(self, key: SigningKey | SubjectPublicKey) -> IssuedCertificate:
        """The core's own server and client certificate."""
        td = self.trust_domain
        profile = LeafProfile(
            common_name="vivified-core",
            organization="Vivified core",
            spiffe_id=core_spiffe_id(td),
            dns_names=(core_dns_name(td), "localhost"),
            ip_addresses=_LOOPBACK,
        )
        return self._issue(profile, _public_key(key), self._config.core_ttl)

    def issue_rest_gateway_certificate(
        self,
        key: SigningKey | SubjectPublicKey,
        *,
        dns_names: tuple[str, ...] = ("localhost",),
        ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = _LOOPBACK,
    ) -> IssuedCertificate:
        """The REST bridge's (Envoy's) server certificate for browsers and
        scripts. Its identity, `spiffe://<td>/gateway/rest`, is of a kind the
        core accepts from no peer, so the certificate cannot call the core as
        a workload."""
        profile = LeafProfile(
            common_name="vivified-rest",
            organization="Vivified REST bridge",
            spiffe_id=f"spiffe://{self.trust_domain}/gateway/rest",
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        return self._issue(profile, _public_key(key), self._config.core_ttl)

    def issue_operator_certificate(
        self, name: str, key: SigningKey | SubjectPublicKey
    ) -> IssuedCertificate:
        """A client-only certificate for an operator's admin tooling."""
        profile = LeafProfile(
            common_name=name,
            organization="Vivified operator",
            spiffe_id=operator_spiffe_id(self.trust_domain, name),
            server_auth=False,
        )
        return self._issue(profile, _public_key(key), self._config.operator_ttl)

    def _issue(
        self, profile: LeafProfile, public_key: SubjectPublicKey, ttl: dt.timedelta
    ) -> IssuedCertificate:
        now = self._clock.now()
        ca_not_after = self._issuing_cert.not_valid_after_utc
        if now >= ca_not_after:
            raise CAError(
                f"issuing CA expired at {ca_not_after.isoformat()}; no certificate can be issued",
                reason="CA_EXPIRED",
            )
        cert = build_leaf(
            profile=profile,
            public_key=public_key,
            issuing_cert=self._issuing_cert,
            issuing_key=self._issuing_key,
            serial=random_serial(self._random_bytes),
            not_before=max(now - self._config.clock_skew, self._issuing_cert.not_valid_before_utc),
            # A leaf outliving its issuer would fail verification after the issuer expires.
            not_after=min(now + ttl, ca_not_after),
        )
        cert_pem = _pem(cert)
        return IssuedCertificate(
            cert_pem=cert_pem,
            chain_pem=cert_pem + self._issuing_pem,
            serial=cert.serial_number,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )


def _public_key(key: SigningKey | SubjectPublicKey) -> SubjectPublicKey:
    public = key.public_key() if isinstance(key, SigningKey) else key
    subject_key = as_subject_key(public)
    if subject_key is None:
        raise InvalidArgument(
            f"key refused: {public_key_problem(public) or 'unsupported key type'}",
            reason="INVALID_REQUEST",
            domain="vivified.ca",
        )
    return subject_key
