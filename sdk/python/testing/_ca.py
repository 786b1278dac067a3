"""`LocalCA`: a throwaway certificate authority shaped like the core's.

Root → issuing CA → leaves, with the names the platform uses: the core's
certificate carries DNS `core.<trust-domain>` and `localhost` and URI
`spiffe://<trust-domain>/core`; a plugin's carries DNS
`<id>.plugin.<trust-domain>` and URI `spiffe://<trust-domain>/plugin/<id>`.
Keys live in memory only. For tests; never for a deployment."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = dt.timedelta(days=1)


def key_usage(*, digital_signature: bool = True, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    """A keyUsage extension; the default is what an X.509-SVID leaf carries."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


_SIGNING_ONLY = key_usage()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Leaf:
    """An issued certificate: `chain_pem` is the leaf then the issuing CA."""

    cert: x509.Certificate
    chain_pem: bytes
    key_pem: bytes = b""
    """Empty when the leaf was issued for someone else's key (a CSR)."""

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)


class LocalCA:
    """Issues the certificates a test needs.

    Example::

        ca = LocalCA()
        core = ca.core_identity()            # what a real core presents
        impostor = LocalCA().core_identity()  # same names, foreign root
    """

    def __init__(self, trust_domain: str = "vivified.local", *, name: str = "Vivified test") -> None:
        self.trust_domain = trust_domain
        now = dt.datetime.now(dt.UTC)
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca_cert(f"{name} root", self._root_key, self._root_key, _name(f"{name} root"), now, 1)
        self._issuing_key = ec.generate_private_key(ec.SECP256R1())
        self.issuing = self._ca_cert(f"{name} issuing", self._issuing_key, self._root_key, self.root.subject, now, 0)

    @staticmethod
    def _ca_cert(
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        now: dt.datetime,
        path_length: int,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(signer, hashes.SHA256())
        )

    @property
    def root_pem(self) -> bytes:
        return _pem(self.root)

    def issue(
        self,
        common_name: str,
        *,
        uris: Sequence[str],
        dns_names: Sequence[str],
        ip_addresses: Sequence[str] = (),
        public_key: ec.EllipticCurvePublicKey | None = None,
        lifetime: dt.timedelta = _ONE_DAY,
        backdate: dt.timedelta = dt.timedelta(seconds=1),
        is_ca: bool = False,
        key_usage: x509.KeyUsage = _SIGNING_ONLY,
        extended_usages: Sequence[x509.ObjectIdentifier] = (
            ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.SERVER_AUTH,
        ),
    ) -> Leaf:
        """An X.509-SVID leaf (CA:false, digitalSignature, EKU clientAuth +
        serverAuth) with a fresh key unless `public_key` is given. `is_ca`,
        `key_usage` and `extended_usages` mint leaves that break those rules,
        for tests of the checks that refuse them."""
        key: ec.EllipticCurvePrivateKey | None = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.DNSName(d) for d in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.issuing.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - backdate)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(list(extended_usages)), critical=False)
            .sign(self._issuing_key, hashes.SHA256())
        )
        return Leaf(cert=cert, chain_pem=_pem(cert) + _pem(self.issuing), key_pem=_key_pem(key) if key else b"")

    def core_identity(self) -> Leaf:
        """The core's server-and-client certificate."""
        td = self.trust_domain
        return self.issue("core", uris=[f"spiffe://{td}/core"], dns_names=[f"core.{td}", "localhost"])

    def plugin_identity(
        self, plugin_id: str, *, public_key: ec.EllipticCurvePublicKey | None = None, lifetime: dt.timedelta = _ONE_DAY
    ) -> Leaf:
        """A plugin's certificate, as the core issues it."""
        td = self.trust_domain
        return self.issue(
            plugin_id,
            uris=[f"spiffe://{td}/plugin/{plugin_id}"],
            dns_names=[f"{plugin_id}.plugin.{td}"],
            public_key=public_key,
            lifetime=lifetime,
        )

    def sign_csr(self, csr_pem: bytes, plugin_id: str, *, lifetime: dt.timedelta) -> Leaf:
        """Like the core: only the CSR's public key is used; names come from the plugin id."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise TypeError("CSR key is not an EC key")
        return self.plugin_identity(plugin_id, public_key=public_key, lifetime=lifetime)
