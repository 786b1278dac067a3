"""The core's certificate authority: one root, one issuing CA, short-lived leaves.

During a rotation (`_rotation.py`) it trusts two roots; `advance` performs
the rotation's steps when they are due and `trust_bundle_pem` is what every
peer is told to trust.

Leaves take only the public key from their request; everything else comes
from `CAConfig` and the builders in `_build.py`. The CA's files are handled
by `_store.py`, their consistency checks by `_material.py`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass, replace
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
from vivified.core.ca._rotation import (
    extra_roots,
    finish_interrupted_switch,
    pem_bundle,
    read_plan,
    remove_previous,
    switch_files,
)
from vivified.core.ca._serial import RandomBytes, random_serial
from vivified.core.ca._spiffe import (
    core_dns_name,
    core_spiffe_id,
    operator_spiffe_id,
    plugin_dns_name,
    plugin_spiffe_id,
)
from vivified.core.ca._store import CAMaterial, load_or_create_material
from vivified.core.clock import Clock
from vivified.core.errors import InvalidArgument

_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class _Material:
    root_cert: x509.Certificate
    issuing_cert: x509.Certificate
    issuing_key: SigningKey
    root_pem: bytes
    issuing_pem: bytes
    extra_roots: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class RotationStep:
    """One step of a CA rotation the core performed (or noticed), for the audit log."""

    action: str
    """`ca.rotation.begin`, `ca.issuing.switch` or `ca.root.remove`."""
    detail: dict[str, str]


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
        self._config = config
        self._clock = clock
        self._random_bytes = random_bytes
        # One immutable snapshot, replaced in one assignment: a leaf is never
        # signed with one issuing CA's key under another's certificate while
        # `advance` (on a worker thread) switches them.
        self._m = _Material(root_cert, issuing_cert, issuing_key, _pem(root_cert), _pem(issuing_cert), ())
        self._directory: Path | None = None
        self._seen_phase: str | None = None
        self._seen_at: dt.datetime | None = None

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
        directory = Path(directory)
        if directory.exists():
            finish_interrupted_switch(directory)
        material = load_or_create_material(directory, config, clock, random_bytes)
        ca = cls._from_material(material, config, clock, random_bytes)
        ca._directory = directory
        ca._m = replace(ca._m, extra_roots=extra_roots(directory))
        return ca

    @classmethod
    def _from_material(
        cls, material: CAMaterial, config: CAConfig, clock: Clock, random_bytes: RandomBytes
    ) -> CertificateAuthority:
        return cls(
            root_cert=material.root_cert,
            issuing_cert=material.issuing_cert,
            issuing_key=material.issuing_key,
            root_key=material.root_key,
            config=config,
            clock=clock,
            random_bytes=random_bytes,
        )

    def now(self) -> dt.datetime:
        """The CA's clock."""
        return self._clock.now()

    @property
    def directory(self) -> Path | None:
        """The CA directory the core manages, None for mounted paths (no rotation)."""
        return self._directory

    @property
    def rotatable(self) -> bool:
        """Whether this CA lives in a directory the core manages (not mounted paths)."""
        return self._directory is not None

    @property
    def trust_bundle_pem(self) -> bytes:
        """Every root a peer must trust now: the signing root first, then the
        next (rotation begun) or the previous one (issuing switched)."""
        m = self._m
        return m.root_pem + pem_bundle(m.extra_roots)

    @property
    def trusted_roots(self) -> tuple[x509.Certificate, ...]:
        m = self._m
        return (m.root_cert, *m.extra_roots)

    def advance(self, min_overlap: dt.timedelta) -> list[RotationStep]:
        """Perform the rotation steps that are due (see `_rotation.py`);
        `min_overlap` is the longest leaf lifetime now in force, the least
        time each overlap window lasts whatever the plan says."""
        directory = self._directory
        if directory is None:
            return []
        plan = read_plan(directory)
        now = self._clock.now()
        steps: list[RotationStep] = []
        if plan is None:
            if self._m.extra_roots:  # removed by hand: trust what is on disk
                self._m = replace(self._m, extra_roots=())
            self._seen_phase = None
            return steps
        if self._seen_phase is None and plan.phase == "distributing":
            self._seen_at = now
            self._m = replace(self._m, extra_roots=extra_roots(directory))
            steps.append(
                RotationStep(
                    "ca.rotation.begin",
                    {
                        "next_root_serial": format(self._m.extra_roots[0].serial_number, "x"),
                        "root_serial": format(self._m.root_cert.serial_number, "x"),
                        "switch_at": plan.switch_at.isoformat(),
                    },
                )
            )
        self._seen_phase = plan.phase
        seen_at = self._seen_at or plan.started_at
        if plan.phase == "distributing" and now >= max(plan.switch_at, seen_at + min_overlap):
            old_root = self._m.root_cert
            plan = switch_files(directory, plan, now, min_overlap)
            self._reload(directory)
            self._seen_phase = plan.phase
            steps.append(
                RotationStep(
                    "ca.issuing.switch",
                    {
                        "root_serial": format(self._m.root_cert.serial_number, "x"),
                        "issuing_serial": format(self._m.issuing_cert.serial_number, "x"),
                        "previous_root_serial": format(old_root.serial_number, "x"),
                        "remove_at": plan.remove_at.isoformat() if plan.remove_at else "",
                    },
                )
            )
        if plan.phase == "switched" and plan.remove_at is not None and now >= plan.remove_at:
            removed = [format(c.serial_number, "x") for c in self._m.extra_roots]
            remove_previous(directory)
            self._m = replace(self._m, extra_roots=())
            self._seen_phase = None
            steps.append(RotationStep("ca.root.remove", {"removed_root_serial": ",".join(removed)}))
        return steps

    def _reload(self, directory: Path) -> None:
        fresh = CertificateAuthority.load_or_create(
            directory, self._config, self._clock, random_bytes=self._random_bytes
        )
        self._m = fresh._m

    @property
    def trust_domain(self) -> str:
        return self._config.trust_domain

    @property
    def config(self) -> CAConfig:
        return self._config

    @property
    def root_pem(self) -> bytes:
        """The trust anchor every peer verifies against."""
        return self._m.root_pem

    @property
    def chain_pem(self) -> bytes:
        """The issuing CA certificate, sent after a leaf so peers can build the chain."""
        return self._m.issuing_pem

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._m.root_cert

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self._m.issuing_cert

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

    def issue_operator_certificate(self, name: str, key: SigningKey | SubjectPublicKey) -> IssuedCertificate:
        """A client-only certificate for an operator's admin tooling."""
        profile = LeafProfile(
            common_name=name,
            organization="Vivified operator",
            spiffe_id=operator_spiffe_id(self.trust_domain, name),
            server_auth=False,
        )
        return self._issue(profile, _public_key(key), self._config.operator_ttl)

    def _issue(self, profile: LeafProfile, public_key: SubjectPublicKey, ttl: dt.timedelta) -> IssuedCertificate:
        now = self._clock.now()
        m = self._m
        ca_not_after = m.issuing_cert.not_valid_after_utc
        if now >= ca_not_after:
            raise CAError(
                f"issuing CA expired at {ca_not_after.isoformat()}; no certificate can be issued",
                reason="CA_EXPIRED",
            )
        cert = build_leaf(
            profile=profile,
            public_key=public_key,
            issuing_cert=m.issuing_cert,
            issuing_key=m.issuing_key,
            serial=random_serial(self._random_bytes),
            not_before=max(now - self._config.clock_skew, m.issuing_cert.not_valid_before_utc),
            # A leaf outliving its issuer would fail verification after the issuer expires.
            not_after=min(now + ttl, ca_not_after),
        )
        cert_pem = _pem(cert)
        return IssuedCertificate(
            cert_pem=cert_pem,
            chain_pem=cert_pem + m.issuing_pem,
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
