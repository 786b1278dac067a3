"""The CA directory, its consistency checks, and the certificates it issues."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from vivified.core.ca import (
    CAConfig,
    CAError,
    CertificateAuthority,
    IssuedCertificate,
    KeyFileError,
    new_private_key,
    write_private_key,
)
from vivified.core.clock import ManualClock
from vivified.core.errors import InvalidArgument

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
SKEW = dt.timedelta(minutes=5)


def csr_pem(key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return builder.sign(key or new_private_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def new_ca(directory: Path, clock: ManualClock | None = None, config: CAConfig | None = None) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(directory, config or CAConfig(), clock or ManualClock(NOW))


def chain_of(issued: IssuedCertificate) -> tuple[x509.Certificate, x509.Certificate]:
    leaf, issuing = x509.load_pem_x509_certificates(issued.chain_pem)
    return leaf, issuing


def verifier(ca: CertificateAuthority, at: dt.datetime) -> PolicyBuilder:
    return PolicyBuilder().store(Store([x509.load_pem_x509_certificate(ca.root_pem)])).time(at)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return new_ca(ca_dir)


# --- the directory -----------------------------------------------------------------


def test_files_are_created_with_private_modes(ca: CertificateAuthority, ca_dir: Path) -> None:
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in ca_dir.iterdir()) == [
        "issuing.crt",
        "issuing.key",
        "root.crt",
        "root.key",
    ]
    for key in ("root.key", "issuing.key"):
        assert stat.S_IMODE((ca_dir / key).stat().st_mode) == 0o600
    assert (ca_dir / "root.crt").read_bytes() == ca.root_pem
    assert (ca_dir / "issuing.crt").read_bytes() == ca.chain_pem


def test_load_or_create_twice_returns_the_same_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    again = new_ca(ca_dir)
    assert again.root_pem == ca.root_pem
    assert again.chain_pem == ca.chain_pem
    leaf, _ = chain_of(again.issue_plugin_certificate("email", csr_pem()))
    leaf.verify_directly_issued_by(ca.issuing_certificate)


def test_explicit_paths_load_the_same_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    loaded = CertificateAuthority.load(
        ca_dir / "root.crt",
        ca_dir / "issuing.crt",
        ca_dir / "issuing.key",
        CAConfig(),
        ManualClock(NOW),
    )
    assert loaded.root_pem == ca.root_pem and loaded.chain_pem == ca.chain_pem


def test_root_key_may_be_kept_offline(ca: CertificateAuthority, ca_dir: Path) -> None:
    (ca_dir / "root.key").unlink()
    assert new_ca(ca_dir).root_pem == ca.root_pem


def test_ca_profile(ca: CertificateAuthority) -> None:
    root, issuing = ca.root_certificate, ca.issuing_certificate
    for cert, path_length in ((root, 1), (issuing, 0)):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca and constraints.value.path_length == path_length
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        assert not usage.value.digital_signature
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        assert cert.not_valid_before_utc == NOW - SKEW
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    assert root.not_valid_after_utc == NOW + dt.timedelta(days=3650)
    assert issuing.not_valid_after_utc == NOW + dt.timedelta(days=365)


def test_k1_insecure_issuing_key_stops_the_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    os.chmod(ca_dir / "issuing.key", 0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {ca_dir / 'issuing.key'}") as caught:
        new_ca(ca_dir)
    assert caught.value.reason == "KEY_FILE_INSECURE"


def test_k1_insecure_root_key_stops_the_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    os.chmod(ca_dir / "root.key", 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        new_ca(ca_dir)


@pytest.mark.parametrize("removed", ["root.crt", "issuing.crt", "issuing.key"])
def test_incomplete_directory_is_refused(ca: CertificateAuthority, ca_dir: Path, removed: str) -> None:
    (ca_dir / removed).unlink()
    with pytest.raises(CAError, match=f"incomplete: {removed} missing") as caught:
        new_ca(ca_dir)
    assert caught.value.reason == "CA_INCOMPLETE"
    assert removed not in {p.name for p in ca_dir.iterdir()}  # nothing was silently recreated


def test_issuing_key_that_does_not_match_is_refused(ca: CertificateAuthority, ca_dir: Path) -> None:
    write_private_key(ca_dir / "issuing.key", new_private_key())
    with pytest.raises(CAError, match="issuing CA key does not match"):
        new_ca(ca_dir)


def test_root_key_that_does_not_match_is_refused(ca: CertificateAuthority, ca_dir: Path) -> None:
    write_private_key(ca_dir / "root.key", new_private_key())
    with pytest.raises(CAError, match="root key does not match"):
        new_ca(ca_dir)


def test_issuing_ca_of_another_root_is_refused(ca: CertificateAuthority, ca_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    new_ca(other)
    for name in ("issuing.crt", "issuing.key"):
        shutil.copy2(other / name, ca_dir / name)
    with pytest.raises(CAError, match="does not chain to the root"):
        new_ca(ca_dir)


def test_leaf_in_place_of_the_root_is_refused(ca: CertificateAuthority, ca_dir: Path) -> None:
    (ca_dir / "root.crt").write_bytes(ca.issue_plugin_certificate("email", csr_pem()).cert_pem)
    with pytest.raises(CAError, match="root certificate is not a CA"):
        new_ca(ca_dir)


def test_ca_of_another_trust_domain_is_refused(ca: CertificateAuthority, ca_dir: Path) -> None:
    with pytest.raises(CAError, match=r"not to trust domain 'other\.local'"):
        new_ca(ca_dir, config=CAConfig(trust_domain="other.local"))


def test_expired_and_not_yet_valid_ca_refused_at_load(ca: CertificateAuthority, ca_dir: Path) -> None:
    with pytest.raises(CAError) as expired:
        new_ca(ca_dir, ManualClock(NOW + dt.timedelta(days=366)))
    assert expired.value.reason == "CA_EXPIRED"
    with pytest.raises(CAError) as early:
        new_ca(ca_dir, ManualClock(NOW - dt.timedelta(hours=1)))
    assert early.value.reason == "CA_NOT_YET_VALID"


# --- issued certificates ------------------------------------------------------------


def test_plugin_leaf_chains_to_the_root(ca: CertificateAuthority) -> None:
    issued = ca.issue_plugin_certificate("email", csr_pem())
    leaf, issuing = chain_of(issued)
    assert issuing.public_bytes(serialization.Encoding.PEM) == ca.chain_pem
    assert leaf.public_bytes(serialization.Encoding.PEM) == issued.cert_pem
    client = verifier(ca, NOW).build_client_verifier().verify(leaf, [issuing])
    assert client.subjects is not None
    assert x509.UniformResourceIdentifier("spiffe://vivified.local/plugin/email") in client.subjects
    server = verifier(ca, NOW).build_server_verifier(x509.DNSName("email.plugin.vivified.local"))
    assert len(server.verify(leaf, [issuing])) == 3
    with pytest.raises(VerificationError):
        verifier(ca, NOW).build_server_verifier(x509.DNSName("hr.plugin.vivified.local")).verify(leaf, [issuing])


def test_leaf_of_a_foreign_ca_does_not_verify(ca: CertificateAuthority, tmp_path: Path) -> None:
    foreign = new_ca(tmp_path / "foreign")
    leaf, issuing = chain_of(foreign.issue_plugin_certificate("email", csr_pem()))
    with pytest.raises(VerificationError):
        verifier(ca, NOW).build_client_verifier().verify(leaf, [issuing])


def test_plugin_leaf_extensions_and_dates(ca: CertificateAuthority) -> None:
    key = new_private_key()
    issued = ca.issue_plugin_certificate("email", csr_pem(key))
    leaf, _ = chain_of(issued)
    assert issued.not_before == leaf.not_valid_before_utc == NOW - SKEW
    assert issued.not_after == leaf.not_valid_after_utc == NOW + dt.timedelta(hours=1)
    assert issued.serial == leaf.serial_number and 0 < issued.serial < 2**128
    assert leaf.issuer == ca.issuing_certificate.subject
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuing_ski = ca.issuing_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == issuing_ski.digest
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).critical


def test_serials_come_from_the_injected_randomness(ca_dir: Path) -> None:
    ca = CertificateAuthority.load_or_create(
        ca_dir, CAConfig(), ManualClock(NOW), random_bytes=lambda n: b"\x00" * (n - 1) + b"\x2a"
    )
    assert ca.issue_plugin_certificate("email", csr_pem()).serial == 42
    default = new_ca(ca_dir.parent / "other")
    serials = {default.issue_plugin_certificate("email", csr_pem()).serial for _ in range(5)}
    assert len(serials) == 5


def test_leaf_not_after_is_capped_at_the_issuing_ca_expiry(tmp_path: Path) -> None:
    short = new_ca(tmp_path / "short", config=CAConfig(issuing_ttl=dt.timedelta(minutes=30)))
    issued = short.issue_plugin_certificate("email", csr_pem())
    assert issued.not_after == short.issuing_certificate.not_valid_after_utc == NOW + dt.timedelta(minutes=30)


def test_leaf_cap_applies_as_the_issuing_ca_ages(ca_dir: Path) -> None:
    clock = ManualClock(NOW)
    ca = new_ca(ca_dir, clock)
    expiry = ca.issuing_certificate.not_valid_after_utc
    clock.advance((expiry - NOW).total_seconds() - 600)  # ten minutes left
    assert ca.issue_plugin_certificate("email", csr_pem()).not_after == expiry
    assert ca.issue_core_certificate(new_private_key()).not_after == expiry
    clock.advance(600)
    with pytest.raises(CAError) as caught:
        ca.issue_plugin_certificate("email", csr_pem())
    assert caught.value.reason == "CA_EXPIRED"


def test_core_certificate_profile(ca: CertificateAuthority) -> None:
    issued = ca.issue_core_certificate(new_private_key())
    leaf, issuing = chain_of(issued)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vivified-core"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://vivified.local/core"]
    assert san.get_values_for_type(x509.DNSName) == ["core.vivified.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert issued.not_after == NOW + dt.timedelta(days=30)
    for name in (
        x509.DNSName("core.vivified.local"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ):
        verifier(ca, NOW).build_server_verifier(name).verify(leaf, [issuing])
    verifier(ca, NOW).build_client_verifier().verify(leaf, [issuing])


def test_operator_certificate_is_client_only(ca: CertificateAuthority) -> None:
    issued = ca.issue_operator_certificate("alice", new_private_key().public_key())
    leaf, issuing = chain_of(issued)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier("spiffe://vivified.local/operator/alice")]
    eku = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.not_after == NOW + dt.timedelta(days=7)  # shorter than the core's 30: recorded and revocable
    verifier(ca, NOW).build_client_verifier().verify(leaf, [issuing])


def test_configured_ttls_are_used(tmp_path: Path) -> None:
    config = CAConfig(
        leaf_ttl=dt.timedelta(seconds=10),
        core_ttl=dt.timedelta(days=2),
        operator_ttl=dt.timedelta(hours=8),
    )
    ca = new_ca(tmp_path / "ca", config=config)
    assert ca.issue_plugin_certificate("email", csr_pem()).not_after == NOW + dt.timedelta(seconds=10)
    assert ca.issue_core_certificate(new_private_key()).not_after == NOW + dt.timedelta(days=2)
    assert ca.issue_operator_certificate("bob", new_private_key()).not_after == NOW + dt.timedelta(hours=8)


def test_operator_name_and_key_type_are_checked(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidArgument):
        ca.issue_operator_certificate("../core", new_private_key())
    with pytest.raises(InvalidArgument, match="secp256k1"):
        ca.issue_core_certificate(ec.generate_private_key(ec.SECP256K1()))


def test_expired_and_not_yet_valid_leaves_come_from_a_ca_on_another_clock(tmp_path: Path) -> None:
    # How transport tests (docs/security.md A4) get bad certificates: no test hook in the CA.
    past = new_ca(tmp_path / "past", ManualClock(NOW - dt.timedelta(days=1)))
    leaf, issuing = chain_of(past.issue_plugin_certificate("email", csr_pem()))
    verifier(past, NOW - dt.timedelta(days=1)).build_client_verifier().verify(leaf, [issuing])
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verifier(past, NOW).build_client_verifier().verify(leaf, [issuing])
    future = new_ca(tmp_path / "future", ManualClock(NOW + dt.timedelta(hours=1)))
    leaf, issuing = chain_of(future.issue_plugin_certificate("email", csr_pem()))
    verifier(future, NOW + dt.timedelta(hours=1)).build_client_verifier().verify(leaf, [issuing])
    with pytest.raises(VerificationError, match="not valid at validation time"):
        verifier(future, NOW).build_client_verifier().verify(leaf, [issuing])
