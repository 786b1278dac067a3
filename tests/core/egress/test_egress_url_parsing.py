"""H1: URL parser confusion (Smokescreen's hostport cases and more), schemes,
ports, IDN homoglyphs and host normalisation, as pure unit tests of the
parser and the allowlist."""

from __future__ import annotations

import ipaddress

import grpc
import pytest

from vivified.core.egress import Allowlist, host_matches, parse_url, redirect_url
from vivified.core.errors import InvalidArgument, VivifiedError
from vivified.core.manifest import validate_allowed_domain

HTTPS_ONLY = frozenset({443})
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

REFUSED = [
    # user info and fragment tricks: the host a naive parser sees is not the one dialled
    ("http://allowed.com@127.0.0.1/", "userinfo"),
    ("https://allowed.com@127.0.0.1/", "userinfo"),
    ("https://user:pass@api.example.com/", "userinfo"),
    ("http://127.0.0.1#@allowed.com", "url_characters"),
    ("https://api.example.com#@evil.com/", "url_characters"),
    ("https://api.example.com/#frag", "url_characters"),
    ("https://api.example.com\\@127.0.0.1/", "url_characters"),
    ("https://api.example.com\\.evil.com/", "url_characters"),
    # whitespace and control characters
    ("https://api.example.com /x", "url_characters"),
    ("https://api.example.com\t/", "url_characters"),
    ("https://api.exam\nple.com/", "url_characters"),
    ("https://api.example.com/\x00", "url_characters"),
    ("https://api.example.com/\x7f", "url_characters"),
    # IDN homoglyphs: a Cyrillic "а" (U+0430) is not an "a"
    ("https://\u0430llowed.com/", "url_characters"),
    ("https://api.ex\u0430mple.com/", "url_characters"),
    ("https://api.example.com/caf\u00e9", "url_characters"),
    # CONNECT-style host:port garbage (Smokescreen hostport cases)
    ("https://[[api.example.com]]/", "host_invalid"),
    ("https://[[::1]]:443/", "host_invalid"),
    ("https://[api.example.com]:443/", "host_invalid"),
    ("https://[::1/", "host_invalid"),
    ("https://[::1]x/", "host_invalid"),
    ("https://:/", "port_invalid"),
    ("https://:443/", "host_invalid"),
    ("https:///path", "host_invalid"),
    ("https://", "host_invalid"),
    ("https://api.example.com:91337/", "port_invalid"),
    ("https://api.example.com:-1/", "port_invalid"),
    ("https://api.example.com:+443/", "port_invalid"),
    ("https://api.example.com:0/", "port_invalid"),
    ("https://api.example.com:https/", "port_invalid"),
    ("https://api.example.com:/", "port_invalid"),
    ("https://api.example.com:443:443/", "host_invalid"),
    ("https://2001:db8::1337/", "host_invalid"),
    # schemes
    ("ftp://api.example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://api.example.com:443/_x", "scheme"),
    ("ws://api.example.com/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("//api.example.com/", "scheme"),
    ("api.example.com:443", "scheme"),
    ("", "url_length"),
    ("https://api.example.com/" + "a" * 9000, "url_length"),
    # ports outside the plugin's allowlist (http needs port 80 allowed)
    ("http://api.example.com/", "port_not_allowed"),
    ("https://api.example.com:8443/", "port_not_allowed"),
    ("https://api.example.com:007/", "port_not_allowed"),
    # IP literals in every spelling, and hosts that only look like names
    ("https://127.0.0.1/", "ip_literal"),
    ("https://169.254.169.254/latest/meta-data/", "ip_literal"),
    ("https://[::1]/", "ip_literal"),
    ("https://[::ffff:127.0.0.1]/", "ip_literal"),
    ("https://[::ffff:7f00:1]/", "ip_literal"),
    ("https://2130706433/", "ip_literal"),
    ("https://0x7f000001/", "ip_literal"),
    ("https://0177.0.0.1/", "ip_literal"),
    ("https://127.1/", "ip_literal"),
    ("https://0/", "ip_literal"),
    ("https://1.2.3.4.5/", "ip_literal"),
    ("https://api.example.0x1/", "ip_literal"),
    ("https://127%2e0%2e0%2e1/", "host_invalid"),
    ("https://api%2eexample.com/", "host_invalid"),
    ("https://[fe80::1%25eth0]/", "host_invalid"),
    ("https://a_b.example.com/", "host_invalid"),
    ("https://api..example.com/", "host_invalid"),
    ("https://api.example.com../", "host_invalid"),
    ("https://-api.example.com/", "host_invalid"),
    ("https://.example.com/", "host_invalid"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_h1_url_parser_confusion(url: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_url(url, allowed_ports=HTTPS_ONLY)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.reason, caught.value.domain) == ("EGRESS_URL_INVALID", "vivified.egress")
    assert caught.value.metadata["why"] == why


@pytest.mark.parametrize(
    ("url", "ports", "expected"),
    [
        ("HTTPS://API.Example.COM./v1/x?q=1&r=%20", HTTPS_ONLY, ("https", "api.example.com", 443, "/v1/x?q=1&r=%20")),
        ("https://api.example.com", HTTPS_ONLY, ("https", "api.example.com", 443, "/")),
        ("https://api.example.com?x=1", HTTPS_ONLY, ("https", "api.example.com", 443, "/?x=1")),
        ("https://api.example.com:443/", HTTPS_ONLY, ("https", "api.example.com", 443, "/")),
        ("https://api.example.com:007/", frozenset({7}), ("https", "api.example.com", 7, "/")),
        ("http://api.example.com/", frozenset({80}), ("http", "api.example.com", 80, "/")),
        ("https://xn--llowed-3ve.com/", HTTPS_ONLY, ("https", "xn--llowed-3ve.com", 443, "/")),
    ],
)
def test_h1_accepted_urls_are_normalised(url: str, ports: frozenset[int], expected: tuple[object, ...]) -> None:
    parsed = parse_url(url, allowed_ports=ports)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.target) == expected
    assert parsed.ip is None


def test_h1_ip_literal_only_inside_an_allow_range() -> None:
    parsed = parse_url("https://127.0.0.1/x", allowed_ports=HTTPS_ONLY, allow_ranges=LOOPBACK)
    assert parsed.ip == ipaddress.ip_address("127.0.0.1")
    mapped = parse_url("https://[::ffff:127.0.0.1]/", allowed_ports=HTTPS_ONLY, allow_ranges=LOOPBACK)
    assert mapped.ip is not None
    for url in ("https://10.0.0.1/", "https://[::1]/", "https://2130706433/", "https://0177.0.0.1/"):
        with pytest.raises(InvalidArgument):
            parse_url(url, allowed_ports=HTTPS_ONLY, allow_ranges=LOOPBACK)


@pytest.mark.parametrize(
    ("url", "admitted"),
    [
        ("https://allowed.com/", True),
        ("https://ALLOWED.com./", True),
        ("https://allowed.com.evil.com/", False),
        ("https://evil.com/allowed.com", False),
        ("https://evil.com/?next=allowed.com", False),
        ("https://notallowed.com/", False),
        ("https://xn--llowed-3ve.com/", False),  # the punycode of the Cyrillic homoglyph
        ("https://api.example.com/", True),
        ("https://API.EXAMPLE.COM./", True),
        ("https://example.com/", False),
        ("https://a.b.example.com/", False),
        ("https://api.example.com.evil.com/", False),
        ("https://evilexample.com/", False),
    ],
)
def test_h1_allowlist_matches_the_parsed_host_only(url: str, admitted: bool) -> None:
    allowlist = Allowlist(["allowed.com", "*.example.com"])
    assert allowlist.admits(parse_url(url, allowed_ports=HTTPS_ONLY).host) is admitted


def test_wildcard_matches_exactly_one_label() -> None:
    assert host_matches("*.example.com", "api.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("*.example.com", ".example.com")
    assert not host_matches("*.example.com", "a.b.example.com")
    assert host_matches("api.example.com", "api.example.com")
    assert not host_matches("api.example.com", "x.api.example.com")


def test_allowlist_ports_default_to_443_only() -> None:
    assert Allowlist(["allowed.com"]).ports == {443}
    assert Allowlist(["allowed.com"], [80, 8443]).ports == {80, 8443}


@pytest.mark.parametrize(
    "entry", ["*", "*.com", "*.*.x.com", "127.0.0.1", "[::1]", "2130706433", "localhost", "a.localhost"]
)
def test_h1_dangerous_allowlist_entries_are_refused_at_manifest_load(entry: str) -> None:
    with pytest.raises(VivifiedError) as caught:
        validate_allowed_domain(entry)
    assert caught.value.reason == "MANIFEST_INVALID"
    # and an entry that slipped into a stored manifest admits nothing
    assert not Allowlist([entry]).admits(entry.strip("[]").lower())


def test_h1_stored_wildcards_over_public_suffixes_admit_nothing() -> None:
    # entries a manifest approved before the Public Suffix List guard could hold
    allowlist = Allowlist(["*.co.kr", "*.com.sg", "*.fly.dev", "*.s3.us-east-1.amazonaws.com", "api.example.com"])
    for host in ("shop.co.kr", "bank.com.sg", "someones-app.fly.dev", "any-bucket.s3.us-east-1.amazonaws.com"):
        assert not allowlist.admits(parse_url(f"https://{host}/", allowed_ports=HTTPS_ONLY).host)
    assert allowlist.admits("api.example.com")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/next?x=1", "https://api.example.com/next?x=1"),
        ("next", "https://api.example.com/a/next"),
        ("https://files.example.org/f", "https://files.example.org/f"),
        ("//files.example.org/f", "https://files.example.org/f"),
        ("/x#frag", "https://api.example.com/x"),
    ],
)
def test_redirect_locations_resolve_against_the_checked_url(location: str, expected: str) -> None:
    base = parse_url("https://api.example.com/a/b", allowed_ports=HTTPS_ONLY)
    assert redirect_url(base, location) == expected


def test_redirect_location_with_non_ascii_or_backslash_is_refused() -> None:
    base = parse_url("https://api.example.com/a", allowed_ports=HTTPS_ONLY)
    for location in ("https://\u0430llowed.com/", "\\\\127.0.0.1/x", "/\\127.0.0.1"):
        with pytest.raises(InvalidArgument):
            redirect_url(base, location)
