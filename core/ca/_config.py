"""Configuration of the CA and the shape of what it issues."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from vivified.core.ca._spiffe import check_trust_domain


@dataclass(frozen=True, slots=True)
class CAConfig:
    """Lifetimes and naming of the core's certificate authority."""

    trust_domain: str = "vivified.local"
    """SPIFFE trust domain; every identity is `spiffe://<trust_domain>/...`."""
    leaf_ttl: dt.timedelta = dt.timedelta(hours=1)
    """Lifetime of plugin certificates; the SDK renews them before expiry."""
    core_ttl: dt.timedelta = dt.timedelta(days=30)
    """Lifetime of the core's own server/client certificate."""
    operator_ttl: dt.timedelta = dt.timedelta(days=7)
    """Lifetime of operator (admin CLI) client certificates. Each is recorded,
    listable and revocable (`vivified operators`); the core re-issues its
    local one at start once half of this has passed or when it was revoked."""
    root_ttl: dt.timedelta = dt.timedelta(days=3650)
    """Lifetime of a newly created root CA."""
    issuing_ttl: dt.timedelta = dt.timedelta(days=365)
    """Lifetime of a newly created issuing CA (never beyond the root's expiry)."""
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)
    """notBefore is backdated by this much so peers with slightly slow clocks accept new certs."""

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        for name in ("leaf_ttl", "core_ttl", "operator_ttl", "root_ttl", "issuing_ttl"):
            if getattr(self, name) <= dt.timedelta(0):
                raise ValueError(f"CAConfig.{name} must be positive")
        if self.clock_skew < dt.timedelta(0):
            raise ValueError("CAConfig.clock_skew must not be negative")


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate the CA signed, with the chain a TLS peer should present."""

    cert_pem: bytes
    """The leaf certificate alone."""
    chain_pem: bytes
    """Leaf followed by the issuing CA certificate (what to hand to the TLS stack)."""
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
