"""SPIFFE ID construction and the strict parser used on every authenticated RPC."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vivified.core.ca import (
    CAConfig,
    SpiffeIdentity,
    core_dns_name,
    core_spiffe_id,
    operator_spiffe_id,
    parse_spiffe_id,
    plugin_dns_name,
    plugin_spiffe_id,
)
from vivified.core.errors import InvalidArgument, Unauthenticated

TD = "vivified.local"


def test_builders_produce_the_documented_forms() -> None:
    assert plugin_spiffe_id(TD, "email") == "spiffe://vivified.local/plugin/email"
    assert core_spiffe_id(TD) == "spiffe://vivified.local/core"
    assert operator_spiffe_id(TD, "alice") == "spiffe://vivified.local/operator/alice"
    assert plugin_dns_name(TD, "hr-sync2") == "hr-sync2.plugin.vivified.local"
    assert core_dns_name(TD) == "core.vivified.local"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("spiffe://vivified.local/plugin/email", SpiffeIdentity("plugin", "email")),
        ("spiffe://vivified.local/plugin/a", SpiffeIdentity("plugin", "a")),
        ("spiffe://vivified.local/plugin/" + "a" * 63, SpiffeIdentity("plugin", "a" * 63)),
        ("spiffe://vivified.local/operator/alice-2", SpiffeIdentity("operator", "alice-2")),
        ("spiffe://vivified.local/core", SpiffeIdentity("core", "")),
    ],
)
def test_parse_accepts_exact_identities(uri: str, expected: SpiffeIdentity) -> None:
    assert parse_spiffe_id(uri, TD) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://other.local/plugin/email",  # foreign trust domain
        "spiffe://vivified.local.evil/plugin/email",  # trust domain as a prefix
        "spiffe://evil.vivified.local/plugin/email",  # trust domain as a suffix
        "spiffe://VIVIFIED.local/plugin/email",  # case variant of the trust domain
        "https://vivified.local/plugin/email",  # wrong scheme
        "spiffe://vivified.local/plugin/../core",  # traversal
        "spiffe://vivified.local/plugin/%2e%2e",  # encoded traversal
        "spiffe://vivified.local/plugin/a/b",  # extra segment
        "spiffe://vivified.local/plugin/a/",  # trailing slash
        "spiffe://vivified.local//plugin/a",  # empty segment
        "spiffe://vivified.local/plugin/Email",  # uppercase
        "spiffe://vivified.local/plugin/",  # empty name
        "spiffe://vivified.local/plugin",  # no name
        "spiffe://vivified.local/operator/",  # empty operator name
        "spiffe://vivified.local/plugin/-email",  # not a DNS label
        "spiffe://vivified.local/plugin/email-",
        "spiffe://vivified.local/plugin/" + "a" * 64,  # longer than a DNS label
        "spiffe://vivified.local/plugin/em_ail",
        "spiffe://vivified.local/plugin/em.ail",
        "spiffe://vivified.local/plugin/email\n",
        "spiffe://vivified.local/plugin/email\x00core",
        "spiffe://vivified.local/plugin/\u0435mail",  # Cyrillic homoglyph
        "spiffe://vivified.local/plugin/email?x=1",
        "spiffe://vivified.local/plugin/email#frag",
        "spiffe://vivified.local/core/x",  # core carries no name
        "spiffe://vivified.local/core/",
        "spiffe://vivified.local/user/alice",  # unknown kind
        "spiffe://vivified.local/",
        "spiffe://vivified.local",
        "",
    ],
)
def test_parse_refuses_anything_not_exact(uri: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        parse_spiffe_id(uri, TD)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason == "IDENTITY_INVALID"
    assert caught.value.domain == "vivified.auth"


def test_parse_message_does_not_echo_control_characters() -> None:
    with pytest.raises(Unauthenticated) as caught:
        parse_spiffe_id("spiffe://vivified.local/plugin/a\nFAKE LOG LINE", TD)
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("bad", ["", "../core", "Email", "a/b", "-x", "x" * 64, "e\u0301"])
def test_builders_refuse_invalid_names(bad: str) -> None:
    for build in (plugin_spiffe_id, operator_spiffe_id, plugin_dns_name):
        with pytest.raises(InvalidArgument) as caught:
            build(TD, bad)
        assert caught.value.reason == "INVALID_REQUEST"


@pytest.mark.parametrize("bad", ["", "Vivified.local", "a/b", "a..b", "viv ified", "td:443"])
def test_config_refuses_invalid_trust_domain(bad: str) -> None:
    with pytest.raises(ValueError, match="trust domain"):
        CAConfig(trust_domain=bad)


_names = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


@given(_names)
def test_parse_round_trips_every_valid_plugin_id(plugin_id: str) -> None:
    assert parse_spiffe_id(plugin_spiffe_id(TD, plugin_id), TD) == SpiffeIdentity("plugin", plugin_id)


@given(st.text(max_size=100))
def test_parse_never_fails_with_anything_but_unauthenticated(suffix: str) -> None:
    uri = "spiffe://vivified.local/" + suffix
    try:
        identity = parse_spiffe_id(uri, TD)
    except Unauthenticated:
        return
    # Whatever is accepted rebuilds to exactly the input.
    rebuilt = {
        "core": lambda: core_spiffe_id(TD),
        "plugin": lambda: plugin_spiffe_id(TD, identity.name),
        "operator": lambda: operator_spiffe_id(TD, identity.name),
    }[identity.kind]()
    assert rebuilt == uri
