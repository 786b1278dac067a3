"""J6: the egress URL parser, the redirect resolver and the allowlist match
under random and mutated URLs.

Whatever the text, parse_url either refuses it with EGRESS_URL_INVALID or
returns a URL whose host is a lower-case ASCII name or an IP inside an allow
range, whose port is allowed, and which parses again to itself; the
allowlist admits exactly its own hosts; redirect_url refuses or yields text
that parse_url handles the same way. No other exception, at most 1 s and a
bounded allocation per input. The corpus in tests/fuzz_corpus/url is
replayed on every run."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.fuzz import bounded, corpus, fuzz_settings, mutated, tracing
from vivified.core.egress import Allowlist, EgressUrl, parse_url, redirect_url
from vivified.core.errors import InvalidArgument

# Each input has a wall-clock bound: run alone, after the parallel pass (tools/test.sh).
pytestmark = pytest.mark.serial

PORTS = frozenset({443, 80, 8443})
RANGES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))
ALLOWLIST = Allowlist(["api.example.com", "*.example.org"], PORTS)
BASE = parse_url("https://api.example.com/a/b", allowed_ports=PORTS)
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
MAX_PEAK = 1024 * 1024


def _parse(text: str) -> EgressUrl | None:
    try:
        url = parse_url(text, allowed_ports=PORTS, allow_ranges=RANGES)
    except InvalidArgument as exc:
        assert (exc.reason, exc.domain) == ("EGRESS_URL_INVALID", "vivified.egress"), exc
        return None
    assert url.scheme in ("http", "https") and url.port in PORTS and url.target.startswith("/")
    if url.ip is None:
        assert _NAME.fullmatch(url.host) and ".." not in url.host, url
    else:
        mapped = url.ip.ipv4_mapped if isinstance(url.ip, ipaddress.IPv6Address) else None
        assert any((mapped or url.ip) in network for network in RANGES), url
    assert not set(url.authority) & set("@#\\%"), url
    # normalised: the checked URL's own text parses back to the same URL
    assert parse_url(url.text(), allowed_ports=PORTS, allow_ranges=RANGES) == url
    admitted = ALLOWLIST.admits(url.host)
    first, _, parent = url.host.partition(".")
    assert admitted == (url.host == "api.example.com" or (parent == "example.org" and bool(first))), url
    return url


def _check(text: str) -> None:
    def run() -> None:
        _parse(text)
        try:
            target = redirect_url(BASE, text)
        except InvalidArgument as exc:
            assert exc.reason == "EGRESS_URL_INVALID"
            return
        assert isinstance(target, str)
        _parse(target)

    bounded(run, max_bytes=MAX_PEAK + 8 * len(text))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(("name", "data"), corpus("url"))
def test_j6_url_corpus_replays(name: str, data: bytes) -> None:
    with tracing():
        _check(_text(data))


_URLISH = st.text(
    alphabet=st.sampled_from(list("htps:/[]@#%.?&=\\-_~0123456789abcdefxAEX \t\n\u0430\u00e9")), max_size=80
)


@fuzz_settings(max_examples=500)
@given(
    st.one_of(mutated([data for _, data in corpus("url")], max_size=10_000).map(_text), _URLISH, st.text(max_size=200))
)
def test_j6_url_parser_fuzz(text: str) -> None:
    with tracing():
        _check(text)
