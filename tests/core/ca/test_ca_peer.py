"""Reading the identity of a verified TLS peer from its certificate, with the per-RPC cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    PeerCertificate,
    PeerCertificateParser,
    SpiffeIdentity,
    identity_from_pem,
    new_private_key,
    svid_leaf_problem,
)
from vivified.core.clock import ManualClock
from vivified.core.errors import Unauthenticated

TD = "vivified.local"


def _self_signed(names: list[x509.GeneralName] | None) -> bytes:
    key = new_private_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _csr(key_id: str = "x") -> bytes:
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_id)])
    )
    return csr.sign(new_private_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(), ManualClock())


def test_identity_serial_and_expiry_come_from_the_issued_certificate(
    authority: CertificateAuthority,
) -> None:
    issued = authority.issue_plugin_certificate("email", _csr())
    peer = identity_from_pem(issued.cert_pem, TD)
    assert peer == PeerCertificate(
        identity=SpiffeIdentity("plugin", "email"), serial=issued.serial, not_after=issued.not_after
    )


def test_core_and_operator_certificates_parse_to_their_kinds(
    authority: CertificateAuthority,
) -> None:
    core = authority.issue_core_certificate(new_private_key())
    operator = authority.issue_operator_certificate("alice", new_private_key())
    assert identity_from_pem(core.cert_pem, TD).identity == SpiffeIdentity("core", "")
    assert identity_from_pem(operator.cert_pem, TD).identity == SpiffeIdentity("operator", "alice")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a certificate",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_unparsable_pem_is_refused(pem: bytes) -> None:
    with pytest.raises(Unauthenticated) as caught:
        identity_from_pem(pem, TD)
    assert caught.value.reason == "IDENTITY_INVALID"


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (None, "no subjectAltName"),
        ([x509.DNSName("email.plugin.vivified.local")], "found 0"),
        (
            [
                x509.UniformResourceIdentifier("spiffe://vivified.local/plugin/email"),
                x509.UniformResourceIdentifier("spiffe://vivified.local/core"),
            ],
            "found 2",
        ),
        ([x509.UniformResourceIdentifier("spiffe://other.local/plugin/email")], "trust domain"),
    ],
)
def test_certificates_without_exactly_one_valid_uri_san_are_refused(
    names: list[x509.GeneralName] | None, why: str
) -> None:
    with pytest.raises(Unauthenticated, match=why) as caught:
        identity_from_pem(_self_signed(names), TD)
    assert caught.value.reason == "IDENTITY_INVALID"
    assert caught.value.domain == "vivified.auth"


def test_parser_cache_returns_the_identical_object(authority: CertificateAuthority) -> None:
    parser = PeerCertificateParser(TD)
    pem = authority.issue_plugin_certificate("email", _csr()).cert_pem
    first = parser.parse(pem)
    assert parser.parse(pem) is first
    # A different bytes object with equal content is the same key.
    assert parser.parse(bytes(bytearray(pem))) is first
    assert len(parser) == 1


def test_parser_cache_is_bounded_and_evicts_least_recently_used(
    authority: CertificateAuthority,
) -> None:
    parser = PeerCertificateParser(TD, max_entries=2)
    a, b, c = (authority.issue_plugin_certificate(n, _csr()).cert_pem for n in ("a", "b", "c"))
    parsed_a = parser.parse(a)
    parsed_b = parser.parse(b)
    assert parser.parse(a) is parsed_a  # a is now the most recently used
    parser.parse(c)  # evicts b
    assert len(parser) == 2
    assert parser.parse(a) is parsed_a
    reparsed_b = parser.parse(b)
    assert reparsed_b == parsed_b and reparsed_b is not parsed_b


def test_parser_does_not_cache_failures() -> None:
    parser = PeerCertificateParser(TD)
    bad = _self_signed([x509.UniformResourceIdentifier("spiffe://other.local/plugin/email")])
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            parser.parse(bad)
    assert len(parser) == 0


def test_parser_refuses_a_zero_bound() -> None:
    with pytest.raises(ValueError):
        PeerCertificateParser(TD, max_entries=0)


def _usage(**on: bool) -> x509.KeyUsage:
    fields = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(fields | on))


def _leaf(
    ca: bool | None = False,
    usage: x509.KeyUsage | None = None,
    extended: list[x509.ObjectIdentifier] | None = None,
) -> bytes:
    """A leaf with one valid SPIFFE URI SAN and the given SVID-relevant extensions
    (None: the extension is absent)."""
    key = new_private_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://vivified.local/plugin/email")]),
            critical=False,
        )
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if extended is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


CLIENT = [ExtendedKeyUsageOID.CLIENT_AUTH]
SIGN = _usage(digital_signature=True)


def test_svid_leaf_with_the_genuine_extensions_is_accepted() -> None:
    assert identity_from_pem(_leaf(False, SIGN, CLIENT), TD).identity == SpiffeIdentity("plugin", "email")


@pytest.mark.parametrize(
    ("pem", "why"),
    [
        (_leaf(True, _usage(digital_signature=True, key_cert_sign=True), CLIENT), "CA:true"),
        (_leaf(None, SIGN, CLIENT), "lacks basicConstraints"),
        (_leaf(False, _usage(digital_signature=True, key_cert_sign=True), CLIENT), "keyCertSign"),
        (_leaf(False, _usage(digital_signature=True, crl_sign=True), CLIENT), "cRLSign"),
        (_leaf(False, _usage(key_agreement=True), CLIENT), "digitalSignature"),
        (_leaf(False, None, CLIENT), "lacks keyUsage"),
        (_leaf(False, SIGN, [ExtendedKeyUsageOID.SERVER_AUTH]), "clientAuth"),
        (_leaf(False, SIGN, None), "lacks extendedKeyUsage"),
    ],
    ids=[
        "ca-true",
        "no-basic-constraints",
        "key-cert-sign",
        "crl-sign",
        "no-digital-signature",
        "no-key-usage",
        "server-auth-only",
        "no-eku",
    ],
)
def test_svid_leaf_rules_refuse_a_leaf_that_is_no_svid(pem: bytes, why: str) -> None:
    with pytest.raises(Unauthenticated, match=why) as caught:
        identity_from_pem(pem, TD)
    assert (caught.value.reason, caught.value.domain) == ("IDENTITY_INVALID", "vivified.auth")


def test_every_certificate_the_ca_issues_is_an_svid_leaf(authority: CertificateAuthority) -> None:
    plugin = authority.issue_plugin_certificate("email", _csr())
    core = authority.issue_core_certificate(new_private_key())
    operator = authority.issue_operator_certificate("alice", new_private_key())
    for issued in (plugin, core, operator):
        cert = x509.load_pem_x509_certificate(issued.cert_pem)
        assert svid_leaf_problem(cert, ExtendedKeyUsageOID.CLIENT_AUTH) is None
    core_cert = x509.load_pem_x509_certificate(core.cert_pem)
    assert svid_leaf_problem(core_cert, ExtendedKeyUsageOID.SERVER_AUTH) is None
