"""`security.allowed_tunnels`: the `host:port` endpoints a plugin may open an
egress tunnel to, checked with the same host rules as `allowed_domains`."""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc
import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import load_manifest_bytes, validate_manifest, validate_tunnel
from vivified.core.traits import TraitCatalogue

CATALOGUE = TraitCatalogue.load_default()
BASE: dict[str, Any] = {
    "id": "email-gateway",
    "name": "Email Gateway",
    "version": "1.2.0",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin", "external_service"],
    "security": {"allowed_tunnels": ["smtp.example.com:587", "*.mail.example.org:465"]},
}


def refused(security: dict[str, Any], traits: list[str] | None = None) -> str:
    data = copy.deepcopy(BASE)
    data["security"] = security
    if traits is not None:
        data["traits"] = traits
    with pytest.raises(InvalidArgument) as caught:
        validate_manifest(load_manifest_bytes(json.dumps(data).encode()), CATALOGUE)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.reason == "MANIFEST_INVALID"
    return caught.value.message


def test_tunnels_alone_satisfy_external_service() -> None:
    validate_manifest(load_manifest_bytes(json.dumps(BASE).encode()), CATALOGUE)


def test_entries_normalised() -> None:
    assert validate_tunnel("SMTP.Example.com.:25") == ("smtp.example.com", 25)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("smtp.example.com", "must be host:port"),
        (":25", "must be host:port"),
        ("smtp.example.com:0", "1-65535"),
        ("smtp.example.com:65536", "1-65535"),
        ("smtp.example.com:025", "1-65535"),
        ("smtp.example.com:-1", "1-65535"),
        ("smtp.example.com:+25", "1-65535"),
        ("127.0.0.1:25", "IP address literals"),
        ("[::1]:25", "IP address literals"),
        ("localhost:25", "'localhost' refused"),
        ("mail.corp:25", "local or private"),
        ("*.com:25", "wildcard"),
        ("*.github.io:25", "wildcard over a public suffix"),
        ("smtp.example.com:25:25", "bare host name"),
        ("user@smtp.example.com:25", "bare host name"),
    ],
)
def test_bad_entries_refused_naming_the_field(entry: str, fragment: str) -> None:
    message = refused({"allowed_tunnels": ["smtp.example.com:587", entry]})
    assert message.startswith("security.allowed_tunnels:") and fragment in message


def test_duplicates_refused_after_normalising() -> None:
    message = refused({"allowed_tunnels": ["smtp.example.com:587", "SMTP.example.com.:587"]})
    assert message.startswith("security.allowed_tunnels:") and "listed twice" in message


def test_tunnels_need_external_service() -> None:
    message = refused({"allowed_tunnels": ["smtp.example.com:587"]}, traits=["communication_plugin"])
    assert message.startswith("security.allowed_tunnels:") and "external_service" in message


def test_external_service_needs_domains_or_tunnels() -> None:
    assert "required for a plugin with external_service" in refused({})
