"""H1 (manifest part): allowed_domains entries that would widen egress are refused."""

from __future__ import annotations

import json

import pytest
from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    load_manifest_bytes,
    validate_allowed_domain,
    validate_manifest,
)
from vivified.core.traits import TraitCatalogue

BAD_ENTRIES = [
    # wildcards that match too much
    "*", "*.", "*.com", "*.*.x.com", "a.*.com", "*example.com", "**.example.com", "*.co.uk",
    "*.com.au", "*.github.io", "co.uk", "github.io",
    # IP literals in every spelling
    "127.0.0.1", "10.0.0.1", "172.17.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "::1", "[::1]", "::ffff:127.0.0.1", "fe80::1%eth0", "[fd00::1]",
    "2130706433", "0x7f000001", "017700000001", "127.1", "0x7f.0.0.1", "0177.0.0.1",
    # local and private names
    "localhost", "LOCALHOST", "localhost.", "*.localhost", "api.localhost",
    "localhost.localdomain", "printer.local", "*.corp.local", "db.internal", "x.home.arpa",
    "nas.lan", "1.0.0.127.in-addr.arpa",
    # not a bare host name
    "http://example.com", "https://api.example.com/", "example.com:443", "example.com/path",
    "user@example.com", "example.com?x=1", "example.com#frag", "exa mple.com", " example.com",
    "example.com\n", "example.com\x00", "example.com\\evil.com", "example.com%2f",
    # homoglyphs and raw unicode
    "\u0430pi.example.com", "ex\u0430mple.com", "例え.jp",
    # malformed labels
    "", ".", "example", "-a.com", "a-.com", "a..com", ".example.com", "example.com..",
    "ab--c.com", "a" * 64 + ".com", "example.123", "xn--.com", "a_b.example.com",
    ("a" * 60 + ".") * 5 + "com",
]

GOOD_ENTRIES = {
    "api.example.com": "api.example.com",
    "API.Example.COM.": "api.example.com",
    "*.example.com": "*.example.com",
    "*.mail.example.co.uk": "*.mail.example.co.uk",
    "xn--80ak6aa92e.com": "xn--80ak6aa92e.com",
    "example.xn--p1ai": "example.xn--p1ai",
    "a-b.c-d.example.io": "a-b.c-d.example.io",
    "myproject.github.io": "myproject.github.io",
    "1password.com": "1password.com",
}


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_h1_allowlist_entries_refused_at_manifest_load(entry: str) -> None:
    data = {
        "id": "email-gateway", "name": "Email Gateway", "version": "1.0.0",
        "contracts": ["vivified.communication.v1.CommunicationPluginService"],
        "traits": ["communication_plugin", "external_service"],
        "security": {"allowed_domains": ["smtp.example.com", entry]},
    }
    manifest = load_manifest_bytes(json.dumps(data).encode())
    with pytest.raises(InvalidArgument) as info:
        validate_manifest(manifest, TraitCatalogue.load_default())
    assert info.value.reason == "MANIFEST_INVALID"
    assert info.value.message.startswith("security.allowed_domains:")
    assert "refused" in info.value.message


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_h1_allowed_domain_validator_refuses(entry: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_allowed_domain(entry)
    assert (info.value.reason, info.value.domain) == ("MANIFEST_INVALID", "vivified.registry")


@pytest.mark.parametrize(("entry", "normalised"), sorted(GOOD_ENTRIES.items()))
def test_h1_good_entries_normalised(entry: str, normalised: str) -> None:
    assert validate_allowed_domain(entry) == normalised


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("127.0.0.1", "IP address"),
        ("0x7f000001", "IP address"),
        ("[::1]", "IP address"),
        ("*.com", "two labels after"),
        ("*.co.uk", "public suffix"),
        ("localhost", "local or private"),
        ("example.com:443", "bare host name"),
        ("\u0430pi.example.com", "IDNA"),
    ],
)
def test_h1_refusal_says_why(entry: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_allowed_domain(entry)
    assert fragment in info.value.message
