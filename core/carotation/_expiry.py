"""Expiry of the CA certificates and of plugin certificates (`LeafExpiry`).

CA certificates: a gauge per role, and one `SecurityAlert`
per certificate once less than `warn_fraction` of its lifetime and less
than `warn_before` is left (a year-long issuing CA: 30 days ahead)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from cryptography import x509
from prometheus_client import CollectorRegistry, Gauge

from vivified.core.registry import CertificateRecord
from vivified.events.v1.canonical_pb2 import SEVERITY_WARNING, SecurityAlert


class CertificateExpiry:
    """Seconds left per CA certificate (`vivified_ca_certificate_expiry_seconds`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        warn_fraction: float = 0.2,
        warn_before: dt.timedelta = dt.timedelta(days=30),
    ) -> None:
        self._gauge = Gauge(
            "vivified_ca_certificate_expiry_seconds",
            "Seconds until a CA certificate the core uses or trusts expires",
            ["role", "serial"],
            registry=registry,
        )
        self._warn_fraction = warn_fraction
        self._warn_before = warn_before
        self._warned: set[int] = set()
        self._shown: set[tuple[str, str]] = set()

    def observe(self, certs: Iterable[tuple[str, x509.Certificate]], now: dt.datetime) -> list[SecurityAlert]:
        """Update the gauge for `(role, certificate)` pairs; alerts for newly near-expiry ones."""
        alerts: list[SecurityAlert] = []
        shown: set[tuple[str, str]] = set()
        for role, cert in certs:
            serial = format(cert.serial_number, "x")
            left = cert.not_valid_after_utc - now
            self._gauge.labels(role=role, serial=serial).set(left.total_seconds())
            shown.add((role, serial))
            life = cert.not_valid_after_utc - cert.not_valid_before_utc
            near = left < min(self._warn_before, life * self._warn_fraction)
            if near and cert.serial_number not in self._warned:
                self._warned.add(cert.serial_number)
                alerts.append(
                    SecurityAlert(
                        alert_id=uuid.uuid4().hex,
                        kind="ca_certificate_expiring",
                        severity=SEVERITY_WARNING,
                        summary=f"the {role} CA certificate expires at {cert.not_valid_after_utc.isoformat()}; "
                        "run `vivified ca rotate` before then",
                        subject=f"ca/{role}",
                        details={"serial": serial, "seconds_left": str(int(left.total_seconds()))},
                    )
                )
        for role, serial in self._shown - shown:
            self._gauge.remove(role, serial)
        self._shown = shown
        return alerts


class LeafExpiry:
    """Plugin certificates: `vivified_plugin_certificate_expiry_seconds{plugin}`
    for each active plugin's newest certificate, and one `SecurityAlert` per
    certificate once less than `warn_fraction` of its lifetime is left. The
    SDKs renew at two thirds (default), so a plugin reaching this point has
    missed renewals and will be cut off at expiry unless it renews."""

    def __init__(self, registry: CollectorRegistry, *, warn_fraction: float = 0.2) -> None:
        self._gauge = Gauge(
            "vivified_plugin_certificate_expiry_seconds",
            "Seconds until an active plugin's newest certificate expires",
            ["plugin"],
            registry=registry,
        )
        self._warn_fraction = warn_fraction
        self._warned: set[int] = set()
        self._shown: set[str] = set()

    def observe(self, records: Iterable[CertificateRecord], active: set[str], now: dt.datetime) -> list[SecurityAlert]:
        newest: dict[str, CertificateRecord] = {}
        for record in records:
            plugin = record.subject.removeprefix("plugin/")
            if record.revoked_at is not None or plugin not in active or record.issued_at is None:
                continue
            if plugin not in newest or record.not_after > newest[plugin].not_after:
                newest[plugin] = record
        epoch = now.timestamp()
        alerts: list[SecurityAlert] = []
        for plugin, record in newest.items():
            left = record.not_after - epoch
            self._gauge.labels(plugin=plugin).set(left)
            life = record.not_after - (record.issued_at or record.not_after)
            if 0 < left < life * self._warn_fraction and record.serial not in self._warned:
                self._warned.add(record.serial)
                alerts.append(
                    SecurityAlert(
                        alert_id=uuid.uuid4().hex,
                        kind="plugin_certificate_expiring",
                        severity=SEVERITY_WARNING,
                        summary=f"plugin {plugin}'s certificate expires in {int(left)} s and was not renewed",
                        subject=f"plugin/{plugin}",
                        details={"serial": format(record.serial, "x"), "seconds_left": str(int(left))},
                    )
                )
        for plugin in self._shown - set(newest):
            self._gauge.remove(plugin)
        self._shown = set(newest)
        return alerts
