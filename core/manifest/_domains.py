"""Validate one `security.allowed_domains` entry of a manifest.

An entry is an exact host name (`api.example.com`) or a one-label wildcard
(`*.example.com`, matching exactly one extra label). Anything that could
widen the egress allowlist beyond one organisation's hosts is refused: IP
literals in every spelling, local and private-use names, a public suffix
itself, a wildcard over one (or over a name with one directly below it), and
anything that is not a bare host name. Public suffixes are those of the
Public Suffix List, both its ICANN and its private-domain sections (see
`_suffixes`), so `*.co.kr`, `*.github.io` and `*.fly.dev` are refused while
`myproject.github.io` is one registrant's host and allowed.
"""

from __future__ import annotations

import ipaddress
import re

from vivified.core.manifest._problem import manifest_invalid, show
from vivified.core.manifest._suffixes import public_suffixes

MAX_HOST_LENGTH = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
# One label of an integer-style IPv4 spelling: decimal, octal (leading 0) or hex.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Characters that mean the entry is a URL or host:port, not a bare host name.
_URL_CHARS = frozenset(":/@?#[]\\%;,=&'\"<>`^{}|~!$()+")

# Names that resolve inside a network, never on the public internet
# (RFC 6761, RFC 6762, RFC 8375, ICANN's .internal, common private TLDs).
_LOCAL_SUFFIXES = (
    "localhost",
    "localdomain",
    "local",
    "internal",
    "lan",
    "home.arpa",
    "arpa",
    "intranet",
    "corp",
    "home",
    "private",
)
FIELD = "security.allowed_domains"


def _refused(entry: str, why: str) -> Exception:
    # The entry is named in the message and, escaped, in the ErrorInfo metadata.
    return manifest_invalid(f"{FIELD}: {show(entry)} refused: {why}", field=FIELD, entry=show(entry)[1:-1])


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _check_label(entry: str, label: str) -> None:
    if not _LABEL.fullmatch(label):
        raise _refused(entry, "each label must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")
    if label[2:4] == "--" and not label.startswith("xn--"):
        raise _refused(entry, "labels with '--' in positions 3-4 are reserved for IDNA (xn--)")
    if label.startswith("xn--"):
        try:
            label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            raise _refused(entry, f"label {label!r} is not valid punycode") from None


def validate_allowed_domain(entry: str) -> str:
    """Return the normalised entry (lower case, no trailing dot) or raise MANIFEST_INVALID."""
    if not isinstance(entry, str) or not entry:
        raise _refused(str(entry), "must be a non-empty host name")
    if not entry.isascii():
        raise _refused(entry, "non-ASCII; write internationalised names in IDNA form (xn--)")
    if _is_ip_literal(entry):
        raise _refused(entry, "IP address literals are not allowed; name the host")
    if any(ch in _URL_CHARS or ch.isspace() or not ch.isprintable() for ch in entry):
        raise _refused(entry, "must be a bare host name: no scheme, user info, port, path or spaces")
    host = entry.lower()
    host = host.removesuffix(".")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        raise _refused(entry, "only a single leading '*.' wildcard label is allowed")
    if len(name) > MAX_HOST_LENGTH:
        raise _refused(entry, f"longer than {MAX_HOST_LENGTH} characters")
    labels = name.split(".")
    if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        raise _refused(entry, "looks like an IP address literal; name the host")
    for label in labels:
        _check_label(entry, label)
    for suffix in _LOCAL_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            raise _refused(entry, f"'{suffix}' names are local or private, not internet hosts")
    if len(labels) < 2:
        why = "a wildcard needs at least two labels after '*.'" if wildcard else "needs at least two labels"
        raise _refused(entry, why)
    if not _TLD.fullmatch(labels[-1]):
        raise _refused(entry, f"top-level label {labels[-1]!r} is not a real TLD")
    suffixes = public_suffixes()
    if suffixes.is_public(name):
        what = "a wildcard over a public suffix" if wildcard else "a public suffix"
        raise _refused(
            entry,
            f"is {what} ({name!r} is on the Public Suffix List), so it would admit "
            "hosts of unrelated owners; name your own domain under it",
        )
    if wildcard and suffixes.has_public_child(name):
        raise _refused(
            entry,
            f"is a wildcard over {name!r}, which has public suffixes directly below it "
            "(Public Suffix List); name your own domain under one of them",
        )
    return host
