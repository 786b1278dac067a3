"""CA rotation steps with an injected clock (A6's building blocks; the real
core under load: test_ca_rotation_e2e.py): the next root is trusted from the
start, issuing switches only after one leaf lifetime, the old root is removed
only after one more, an interrupted switch is finished at load, and CA
expiry, and a plugin certificate that was not renewed, raise one alert
each well before the end."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from prometheus_client import CollectorRegistry

from support.clients import new_csr
from vivified.core.ca import CAConfig, CertificateAuthority, begin_rotation, read_plan
from vivified.core.ca._rotation import NEXT_DIR, PREVIOUS_ROOT
from vivified.core.carotation import CertificateExpiry, LeafExpiry
from vivified.core.clock import ManualClock
from vivified.core.errors import FailedPrecondition
from vivified.core.registry._store import CertificateRecord

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LEAF = dt.timedelta(seconds=10)


def roots(pem: bytes) -> list[int]:
    return [c.serial_number for c in x509.load_pem_x509_certificates(pem)]


def verifies(ca: CertificateAuthority, chain_pem: bytes, at: dt.datetime) -> bool:
    leaf, *intermediates = x509.load_pem_x509_certificates(chain_pem)
    verifier = (
        PolicyBuilder()
        .store(Store(x509.load_pem_x509_certificates(ca.trust_bundle_pem)))
        .time(at)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError:
        return False
    return True


def plugin_leaf(ca: CertificateAuthority) -> bytes:
    csr, _ = new_csr("p", ec.generate_private_key(ec.SECP256R1()))
    return ca.issue_plugin_certificate("p", csr, lifetime=LEAF).chain_pem


def test_a6_rotation_steps_keep_old_leaves_valid_until_expiry_then_drop_the_old_root(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    config = CAConfig(leaf_ttl=LEAF)
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", config, clock)
    old_root = ca.root_certificate.serial_number
    assert ca.advance(LEAF) == []  # no rotation: nothing to do

    plan = begin_rotation(tmp_path / "ca", config, clock, overlap=dt.timedelta(seconds=2))
    with pytest.raises(FailedPrecondition) as again:
        begin_rotation(tmp_path / "ca", config, clock, overlap=dt.timedelta(seconds=2))
    assert again.value.reason == "CA_ROTATION_IN_PROGRESS"
    [begun] = ca.advance(LEAF)
    assert begun.action == "ca.rotation.begin"
    next_root = int(begun.detail["next_root_serial"], 16)
    assert roots(ca.trust_bundle_pem) == [old_root, next_root]

    # The plan's overlap (2 s) is shorter than a leaf: the switch waits one leaf lifetime.
    clock.advance(plan.overlap.total_seconds() + 1)
    assert ca.advance(LEAF) == []
    clock.advance(LEAF.total_seconds() - plan.overlap.total_seconds() - 1.5)
    assert ca.advance(LEAF) == []
    old_leaf = plugin_leaf(ca)  # the old chain signs until the switch: valid until 0.5 s before removal
    assert verifies(ca, old_leaf, clock.now())
    clock.advance(0.5)
    [switched] = ca.advance(LEAF)
    assert switched.action == "ca.issuing.switch"
    assert ca.root_certificate.serial_number == next_root
    assert roots(ca.trust_bundle_pem) == [next_root, old_root]
    new_leaf = plugin_leaf(ca)
    assert verifies(ca, old_leaf, clock.now()) and verifies(ca, new_leaf, clock.now())
    assert not (tmp_path / "ca" / NEXT_DIR).exists() and (tmp_path / "ca" / PREVIOUS_ROOT).exists()

    clock.advance(LEAF.total_seconds() - 1)
    assert ca.advance(LEAF) == []  # an old leaf issued just before the switch is still valid
    clock.advance(1)
    [removed] = ca.advance(LEAF)
    assert removed.action == "ca.root.remove" and removed.detail["removed_root_serial"] == format(old_root, "x")
    assert roots(ca.trust_bundle_pem) == [next_root]
    assert read_plan(tmp_path / "ca") is None
    # An old-chain leaf no longer verifies against the bundle, even inside its validity period.
    assert not verifies(ca, old_leaf, clock.now() - dt.timedelta(seconds=1))
    # A restart loads the rotated CA as the only one.
    reloaded = CertificateAuthority.load_or_create(tmp_path / "ca", config, clock)
    assert roots(reloaded.trust_bundle_pem) == [next_root]


def test_a6_a_switch_interrupted_by_a_crash_is_finished_at_load(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    config = CAConfig()
    directory = tmp_path / "ca"
    ca = CertificateAuthority.load_or_create(directory, config, clock)
    begin_rotation(directory, config, clock, overlap=LEAF)
    ca.advance(LEAF)
    next_root = x509.load_pem_x509_certificate((directory / NEXT_DIR / "root.crt").read_bytes()).serial_number
    # Simulate the crash: plan already says switched, only one file moved.
    plan_text = (directory / "rotation.json").read_text().replace('"distributing"', '"switched"')
    (directory / "rotation.json").write_text(plan_text)
    (directory / PREVIOUS_ROOT).write_bytes((directory / "root.crt").read_bytes())
    os.replace(directory / NEXT_DIR / "issuing.key", directory / "issuing.key")
    reloaded = CertificateAuthority.load_or_create(directory, config, clock)
    assert reloaded.root_certificate.serial_number == next_root
    assert not (directory / NEXT_DIR).exists()


def test_ca_expiry_gauge_and_one_alert_well_before_the_end(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    config = CAConfig(issuing_ttl=dt.timedelta(days=365))
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", config, clock)
    registry = CollectorRegistry()
    expiry = CertificateExpiry(registry)
    roles = [("issuing", ca.issuing_certificate), ("root", ca.root_certificate)]
    assert expiry.observe(roles, clock.now()) == []
    left = registry.get_sample_value(
        "vivified_ca_certificate_expiry_seconds",
        {"role": "issuing", "serial": format(ca.issuing_certificate.serial_number, "x")},
    )
    assert left is not None and left > 364 * 86400
    clock.advance((365 - 31) * 86400)
    assert expiry.observe(roles, clock.now()) == []  # 31 days left: not yet
    clock.advance(2 * 86400)
    [alert] = expiry.observe(roles, clock.now())
    assert alert.kind == "ca_certificate_expiring" and alert.subject == "ca/issuing"
    assert expiry.observe(roles, clock.now()) == []  # once per certificate


def test_plugin_certificate_not_renewed_raises_one_alert_before_it_expires() -> None:
    registry = CollectorRegistry()
    leaves = LeafExpiry(registry)
    start = int(NOW.timestamp())
    records = [
        CertificateRecord(serial=1, subject="plugin/late", not_after=start + 100, issued_at=start, revoked_at=None),
        CertificateRecord(serial=2, subject="plugin/fine", not_after=start + 100, issued_at=start, revoked_at=None),
        CertificateRecord(
            serial=3, subject="plugin/fine", not_after=start + 160, issued_at=start + 60, revoked_at=None
        ),
        CertificateRecord(serial=4, subject="plugin/gone", not_after=start + 100, issued_at=start, revoked_at=None),
    ]
    active = {"late", "fine"}
    assert leaves.observe(records, active, NOW + dt.timedelta(seconds=79)) == []
    [alert] = leaves.observe(records, active, NOW + dt.timedelta(seconds=81))  # 19 s of 100 left, not renewed
    assert alert.kind == "plugin_certificate_expiring" and alert.subject == "plugin/late"
    assert alert.details["serial"] == "1"
    assert leaves.observe(records, active, NOW + dt.timedelta(seconds=82)) == []  # once per certificate
    fine = registry.get_sample_value("vivified_plugin_certificate_expiry_seconds", {"plugin": "fine"})
    assert fine == 160 - 82  # the newest certificate counts
    assert registry.get_sample_value("vivified_plugin_certificate_expiry_seconds", {"plugin": "gone"}) is None
