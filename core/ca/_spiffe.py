"""SPIFFE identities of the platform: who a certificate says its holder is.

Three kinds of workload hold a certificate from the core's CA::

    spiffe://<trust-domain>/core               the core itself
    spiffe://<trust-domain>/plugin/<id>        one plugin
    spiffe://<trust-domain>/operator/<name>    one operator (admin CLI)

The parser is deliberately stricter than the SPIFFE specification: a name is
one DNS label (`[a-z0-9-]`, at most 63 characters, no leading or trailing
hyphen) because it also becomes a DNS SAN (`<id>.plugin.<trust-domain>`), and
anything it does not recognise exactly is refused rather than normalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vivified.core.errors import InvalidArgument, Unauthenticated
from vivified.core.kinds import PrincipalKind

NAMED_KINDS = frozenset({PrincipalKind.PLUGIN, PrincipalKind.OPERATOR})
"""The kinds whose SPIFFE ID has a name segment."""

# One DNS label: a name becomes part of a DNS SAN, so it must be a valid label.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# SPIFFE trust domains: lowercase letters, digits, dots, dashes and underscores.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_AUTH_DOMAIN = "vivified.auth"
_CA_DOMAIN = "vivified.ca"


@dataclass(frozen=True, slots=True)
class SpiffeIdentity:
    """A parsed SPIFFE ID. `name` is the plugin id or operator name; "" for the core."""

    kind: PrincipalKind
    """`plugin`, `operator` (`NAMED_KINDS`) or `core`."""
    name: str


def is_valid_name(name: str) -> bool:
    """True when `name` may be a plugin id or operator name in a SPIFFE ID."""
    return _NAME.fullmatch(name) is not None


def check_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` unchanged, or raise ValueError when it is malformed."""
    if _TRUST_DOMAIN.fullmatch(trust_domain) is None or ".." in trust_domain:
        raise ValueError(f"trust domain {trust_domain!r} is not a valid SPIFFE trust domain")
    return trust_domain


def _checked_name(kind: str, name: str) -> str:
    if not is_valid_name(name):
        raise InvalidArgument(
            f"{kind} name {name[:80]!r} is invalid: use 1-63 characters from [a-z0-9-], "
            "not starting or ending with '-'",
            reason="INVALID_REQUEST",
            domain=_CA_DOMAIN,
        )
    return name


def core_spiffe_id(trust_domain: str) -> str:
    return f"spiffe://{check_trust_domain(trust_domain)}/core"


def plugin_spiffe_id(trust_domain: str, plugin_id: str) -> str:
    """`spiffe://<td>/plugin/<id>`; raises InvalidArgument for an invalid plugin id."""
    return f"spiffe://{check_trust_domain(trust_domain)}/plugin/{_checked_name('plugin', plugin_id)}"


def operator_spiffe_id(trust_domain: str, name: str) -> str:
    """`spiffe://<td>/operator/<name>`; raises InvalidArgument for an invalid name."""
    return f"spiffe://{check_trust_domain(trust_domain)}/operator/{_checked_name('operator', name)}"


def plugin_dns_name(trust_domain: str, plugin_id: str) -> str:
    """Hostname the core verifies when it connects to a plugin's own mTLS server."""
    return f"{_checked_name('plugin', plugin_id)}.plugin.{check_trust_domain(trust_domain)}"


def core_dns_name(trust_domain: str) -> str:
    """Hostname plugins verify when they connect to the core."""
    return f"core.{check_trust_domain(trust_domain)}"


def _invalid(uri: str, why: str) -> Unauthenticated:
    # The URI comes from a peer; repr() and truncation keep control characters
    # and megabyte-long values out of the message and the logs.
    return Unauthenticated(
        f"SPIFFE ID {uri[:120]!r} is not accepted: {why}",
        reason="IDENTITY_INVALID",
        domain=_AUTH_DOMAIN,
    )


def parse_spiffe_id(uri: str, trust_domain: str) -> SpiffeIdentity:
    """Parse a SPIFFE ID of this trust domain; raise Unauthenticated for anything else."""
    prefix = f"spiffe://{trust_domain}/"
    if not uri.startswith(prefix):
        raise _invalid(uri, f"not a SPIFFE ID of trust domain {trust_domain!r}")
    segments = uri[len(prefix) :].split("/")
    kind = segments[0]
    if kind == PrincipalKind.CORE:
        if len(segments) != 1:
            raise _invalid(uri, "the core identity has no further path segments")
        return SpiffeIdentity(kind=PrincipalKind.CORE, name="")
    if kind not in NAMED_KINDS:
        raise _invalid(uri, "unknown identity kind")
    if len(segments) != 2:
        raise _invalid(uri, f"a {kind} identity has exactly one name segment")
    name = segments[1]
    if not is_valid_name(name):
        raise _invalid(uri, f"invalid {kind} name")
    return SpiffeIdentity(kind=PrincipalKind(kind), name=name)
