"""X.509 construction for the CA: root, issuing CA and leaf certificates.

Only this module decides what goes into a certificate, so the profile that
docs/security.md I3 promises ("SAN, key usage and TTL come from core policy") can be
read in one place.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vivified.core.ca._keys import SigningKey, SubjectPublicKey, signature_hash

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class LeafProfile:
    """Everything a leaf certificate says apart from its key, serial and dates."""

    common_name: str
    organization: str
    spiffe_id: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()
    server_auth: bool = True


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_usage(public_key: SubjectPublicKey) -> x509.KeyUsage:
    # keyEncipherment only matters for RSA key transport; EC and Ed25519 keys
    # only ever sign in TLS 1.2 ECDHE and TLS 1.3.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        # An externally provided issuing CA may lack an SKI; derive it the RFC 5280 way.
        issuer_key = issuer.public_key()
        if not isinstance(issuer_key, SubjectPublicKey):
            raise TypeError("issuing CA key type cannot sign certificates") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _sign(builder: x509.CertificateBuilder, key: SigningKey) -> x509.Certificate:
    return builder.sign(private_key=key, algorithm=signature_hash(key))


def _ca_builder(
    *,
    subject: x509.Name,
    key: SigningKey,
    trust_domain: str,
    path_length: int,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # The trust domain in the CA's own SAN lets a loader tell that CA
        # material belongs to another deployment before it issues anything.
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
    )


def build_root(
    *,
    key: SigningKey,
    trust_domain: str,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """Self-signed root: CA, path length 1 (it signs issuing CAs, which sign leaves)."""
    subject = _name(f"Vivified root CA {trust_domain}", "Vivified")
    builder = _ca_builder(
        subject=subject,
        key=key,
        trust_domain=trust_domain,
        path_length=1,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
    ).issuer_name(subject)
    return _sign(builder, key)


def build_issuing(
    *,
    key: SigningKey,
    root_cert: x509.Certificate,
    root_key: SigningKey,
    trust_domain: str,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """Issuing CA signed by the root: CA, path length 0 (it signs leaves only)."""
    builder = (
        _ca_builder(
            subject=_name(f"Vivified issuing CA {trust_domain}", "Vivified"),
            key=key,
            trust_domain=trust_domain,
            path_length=0,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )
        .issuer_name(root_cert.subject)
        .add_extension(_authority_key_id(root_cert), critical=False)
    )
    return _sign(builder, root_key)


def build_leaf(
    *,
    profile: LeafProfile,
    public_key: SubjectPublicKey,
    issuing_cert: x509.Certificate,
    issuing_key: SigningKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """An end-entity certificate: exactly one URI SAN, never a CA."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(profile.spiffe_id)]
    names += [x509.DNSName(name) for name in profile.dns_names]
    names += [x509.IPAddress(address) for address in profile.ip_addresses]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if profile.server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(profile.common_name, profile.organization))
        .issuer_name(issuing_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuing_cert), critical=False)
    )
    return _sign(builder, issuing_key)
