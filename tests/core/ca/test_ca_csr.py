"""CSR abuse (docs/security.md I3): the CA refuses bad requests and ignores what it does not grant."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vivified.core.ca import (
    MAX_CSR_PEM_BYTES,
    CAConfig,
    CertificateAuthority,
    new_private_key,
    validate_csr,
)
from vivified.core.ca._keys import public_key_problem
from vivified.core.clock import ManualClock
from vivified.core.errors import InvalidArgument

TD = "vivified.local"
EMAIL_ID = "spiffe://vivified.local/plugin/email"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
CsrKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


def make_csr(
    key: CsrKey | None = None,
    *,
    sans: list[x509.GeneralName] | None = None,
    extensions: Sequence[x509.ExtensionType] = (),
    common_name: str = "email",
) -> bytes:
    key = key or new_private_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    digest = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    directory: Path = tmp_path_factory.mktemp("ca") / "ca"
    return CertificateAuthority.load_or_create(directory, CAConfig(), ManualClock(NOW))


def assert_refused(authority: CertificateAuthority, csr_pem: bytes, why: str) -> None:
    """Both the validator and the CA refuse, with the registry's CSR_INVALID reason."""
    with pytest.raises(InvalidArgument, match=why) as caught:
        validate_csr(csr_pem, spiffe_id=EMAIL_ID)
    with pytest.raises(InvalidArgument, match=why) as caught_ca:
        authority.issue_plugin_certificate("email", csr_pem)
    for error in (caught.value, caught_ca.value):
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "CSR_INVALID"
        assert error.domain == "vivified.registry"


def test_i3_csr_ca_true_refused(authority: CertificateAuthority) -> None:
    csr = make_csr(extensions=[x509.BasicConstraints(ca=True, path_length=None)])
    assert_refused(authority, csr, "CA:true")


def test_i3_csr_ca_false_basic_constraints_is_accepted(authority: CertificateAuthority) -> None:
    csr = make_csr(extensions=[x509.BasicConstraints(ca=False, path_length=None)])
    authority.issue_plugin_certificate("email", csr)


@pytest.mark.parametrize(
    "sans",
    [
        [
            x509.UniformResourceIdentifier(EMAIL_ID),
            x509.UniformResourceIdentifier("spiffe://vivified.local/core"),
        ],
        [x509.UniformResourceIdentifier(EMAIL_ID), x509.DNSName("evil.example")],
        # Even the DNS name the CA itself would add is not the plugin's to ask for.
        [x509.UniformResourceIdentifier(EMAIL_ID), x509.DNSName("email.plugin.vivified.local")],
        [
            x509.UniformResourceIdentifier(EMAIL_ID),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
        [x509.UniformResourceIdentifier(EMAIL_ID), x509.RFC822Name("ops@example.com")],
        [x509.DNSName("localhost")],
    ],
)
def test_i3_csr_extra_sans_refused(authority: CertificateAuthority, sans: list[x509.GeneralName]) -> None:
    assert_refused(authority, make_csr(sans=sans), "subjectAltName")


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://vivified.local/plugin/hr",  # another plugin
        "spiffe://vivified.local/core",
        "spiffe://vivified.local/operator/email",
        "spiffe://other.local/plugin/email",  # same id, foreign trust domain
        "spiffe://vivified.local/plugin/email/x",
        "spiffe://vivified.local/plugin/EMAIL",
    ],
)
def test_i3_csr_san_for_another_identity_refused(authority: CertificateAuthority, uri: str) -> None:
    assert_refused(authority, make_csr(sans=[x509.UniformResourceIdentifier(uri)]), "subjectAltName")


def test_i3_csr_with_exactly_its_own_spiffe_id_is_accepted(authority: CertificateAuthority) -> None:
    issued = authority.issue_plugin_certificate("email", make_csr(sans=[x509.UniformResourceIdentifier(EMAIL_ID)]))
    assert issued.serial > 0


def test_i3_csr_rsa_1024_refused(authority: CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert_refused(authority, make_csr(key), "1024 bits is too small")


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.SECP521R1(), ec.BrainpoolP256R1(), ec.SECP224R1()])
def test_i3_csr_unsupported_curve_refused(authority: CertificateAuthority, curve: ec.EllipticCurve) -> None:
    assert_refused(authority, make_csr(ec.generate_private_key(curve)), f"curve {curve.name} is not supported")


def test_i3_csr_ed448_refused(authority: CertificateAuthority) -> None:
    assert_refused(authority, make_csr(ed448.Ed448PrivateKey.generate()), "not supported")


def test_rsa_above_8192_bits_refused_by_key_policy() -> None:
    modulus = (1 << 8199) | 1  # any odd 8200-bit number is a well-formed public key
    too_big = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert public_key_problem(too_big) == "RSA key of 8200 bits is too large (maximum 8192)"


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_supported_key_types_are_issued(authority: CertificateAuthority, key: CsrKey) -> None:
    issued = authority.issue_plugin_certificate("email", make_csr(key))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment is isinstance(key, rsa.RSAPrivateKey)


def _tamper_signature(csr_pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte belongs to the signature value
    body = base64.encodebytes(bytes(der))
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("key", [new_private_key(), ed25519.Ed25519PrivateKey.generate()], ids=["ec", "ed25519"])
def test_i3_csr_bad_signature_refused(authority: CertificateAuthority, key: CsrKey) -> None:
    assert_refused(authority, _tamper_signature(make_csr(key)), "signature does not verify")


def test_i3_csr_signed_by_another_key_refused(authority: CertificateAuthority) -> None:
    # Claim a victim's public key: the request carries key A but is signed by key B.
    victim, attacker = new_private_key(), new_private_key()
    signed = x509.load_pem_x509_csr(make_csr(attacker))
    tbs = signed.tbs_certrequest_bytes
    victim_spki = victim.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacker_spki = attacker.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = signed.public_bytes(serialization.Encoding.DER).replace(attacker_spki, victim_spki)
    assert tbs.replace(attacker_spki, victim_spki) in der  # the swap really happened
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE REQUEST-----\n"
    assert_refused(authority, pem, "signature does not verify")


@pytest.mark.parametrize(
    "csr_pem",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_unparsable_csr_refused(authority: CertificateAuthority, csr_pem: bytes) -> None:
    assert_refused(authority, csr_pem, "not a PEM-encoded PKCS#10")


def test_der_instead_of_pem_refused(authority: CertificateAuthority) -> None:
    der = x509.load_pem_x509_csr(make_csr()).public_bytes(serialization.Encoding.DER)
    assert_refused(authority, der, "not a PEM-encoded PKCS#10")


def test_oversized_csr_refused_before_parsing(authority: CertificateAuthority) -> None:
    # A valid CSR padded with text before the PEM block: parsers skip it, the size cap does not.
    padded = b"x" * MAX_CSR_PEM_BYTES + b"\n" + make_csr()
    assert_refused(authority, padded, f"the limit is {MAX_CSR_PEM_BYTES} bytes")
    assert MAX_CSR_PEM_BYTES == 16 * 1024


def test_i3_issued_cert_profile_comes_from_policy_not_the_csr(
    authority: CertificateAuthority,
) -> None:
    greedy = make_csr(
        common_name="core",
        extensions=[
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.OCSP_SIGNING]),
            # The closest a CSR gets to asking for a lifetime: a 10-year key usage period.
            x509.PrivateKeyUsagePeriod(NOW, NOW + dt.timedelta(days=3650)),
            x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None),
        ],
    )
    issued = authority.issue_plugin_certificate("email", greedy)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "email"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Vivified plugin"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [EMAIL_ID]
    assert san.get_values_for_type(x509.DNSName) == ["email.plugin.vivified.local"]
    assert len(list(san)) == 2
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.content_commitment)
    assert not (usage.value.key_encipherment or usage.value.data_encipherment or usage.value.key_agreement)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=1)
    assert issued.not_after == NOW + dt.timedelta(hours=1)
    present = {ext.oid for ext in cert.extensions}
    assert x509.oid.ExtensionOID.NAME_CONSTRAINTS not in present
    assert x509.oid.ExtensionOID.PRIVATE_KEY_USAGE_PERIOD not in present


def test_invalid_plugin_id_refused_before_the_csr_is_read(authority: CertificateAuthority) -> None:
    for plugin_id in ("../core", "core/x", "", "Email", "a" * 64):
        with pytest.raises(InvalidArgument) as caught:
            authority.issue_plugin_certificate(plugin_id, make_csr())
        assert caught.value.reason == "INVALID_REQUEST"
