"""Validate one `security.allowed_domains` entry of a manifest.

An entry is an exact host name (`api.example.com`) or a one-label wildcard
(`*.example.com`, matching exactly one extra label). Anything that could
widen the egress allowlist beyond one organisation's hosts is refused: IP
literals in every spelling, local and private-use names, wildcards over a
TLD or a shared public suffix, and anything that is not a bare host name.
"""

from __future__ import annotations

import ipaddress
import re

from vivified.core.manifest._problem import manifest_invalid, show

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
    "localhost", "localdomain", "local", "internal", "lan", "home.arpa", "arpa",
    "intranet", "corp", "home", "private",
)
# A guard, not a full Public Suffix List: common shared suffixes under which
# unrelated parties register names, so `*.<suffix>` would allow strangers.
_SHARED_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au",
    "co.nz", "co.jp", "co.za", "co.in", "com.br", "com.cn", "com.mx", "com.tr",
    "github.io", "gitlab.io", "herokuapp.com", "appspot.com", "azurewebsites.net",
    "cloudfront.net", "amazonaws.com", "blogspot.com", "netlify.app", "vercel.app",
    "pages.dev", "workers.dev", "web.app", "firebaseapp.com",
})


def _refused(entry: str, why: str) -> Exception:
    return manifest_invalid(f"security.allowed_domains: {show(entry)} refused: {why}")


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _check_label(entry: str, label: str) -> None:
    if not _LABEL.fullmatch(label):
        raise _refused(entry, "each label must be 1-63 characters of a-z, 0-9 and '-', "
                              "not starting or ending with '-'")
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
    if name in _SHARED_SUFFIXES:
        raise _refused(entry, "is a shared public suffix; name your own domain under it")
    return host
