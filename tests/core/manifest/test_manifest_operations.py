"""Operator-lane declarations in a manifest: `provides`, `calls`, `allowed_ports`."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest

SEND = "vivified.communication.v1.CommunicationPluginService/SendMessage"
CATALOGUE = TraitCatalogue.load_default()


def _manifest(**fields: Any) -> PluginManifest:
    data = {
        "id": "mailer",
        "name": "Mailer",
        "version": "1.0.0",
        "contracts": ["vivified.communication.v1.CommunicationPluginService"],
        "traits": ["communication_plugin"],
    }
    data.update(fields)
    return json_format.ParseDict(data, PluginManifest())


def test_declared_operations_pass() -> None:
    validate_manifest(_manifest(provides=[SEND], calls=[{"plugin_id": "vault", "method": SEND}]), CATALOGUE)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"provides": ["vivified.storage.v1.StoragePluginService/StoreObject"]}, "not in contracts"),
        ({"provides": ["/" + SEND]}, "not a contract operation"),
        ({"provides": ["vivified.communication.v1.CommunicationPluginService/Nope"]}, "not a contract operation"),
        ({"provides": [SEND, SEND]}, "listed twice"),
        ({"calls": [{"plugin_id": "../core", "method": SEND}]}, "not a plugin id"),
        ({"calls": [{"plugin_id": "core", "method": SEND}]}, "not a plugin id"),
        ({"calls": [{"plugin_id": "mailer", "method": SEND}]}, "does not call itself"),
        ({"calls": [{"plugin_id": "vault", "method": "*"}]}, "not a known contract operation"),
        ({"calls": [{"plugin_id": "vault", "method": SEND}] * 2}, "listed twice"),
        ({"security": {"allowed_ports": [443]}}, "only meaningful with allowed_domains"),
    ],
)
def test_bad_declarations_are_refused(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_manifest(_manifest(**fields), CATALOGUE)
    assert refused.value.reason == "MANIFEST_INVALID"
    assert needle in refused.value.message


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_ports_out_of_range_refused(port: int) -> None:
    manifest = _manifest(
        traits=["communication_plugin", "external_service"],
        security={"allowed_domains": ["api.example.com"], "allowed_ports": [port]},
    )
    with pytest.raises(InvalidArgument) as refused:
        validate_manifest(manifest, CATALOGUE)
    assert "not a TCP port" in refused.value.message
