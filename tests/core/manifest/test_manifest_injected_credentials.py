"""`security.injected_credentials`: a header the core adds to a plugin's fetches
to one exact allowlisted host, from a secret config value of the same manifest."""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc
import pytest

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import injected_config_keys, load_manifest_bytes, validate_manifest
from vivified.core.traits import TraitCatalogue

CATALOGUE = TraitCatalogue.load_default()
GOOD = {"host": "api.mail.example.com", "header": "Authorization", "config_key": "api_key", "value_prefix": "Bearer "}
BASE: dict[str, Any] = {
    "id": "mailer",
    "name": "Mailer",
    "version": "1.0.0",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin", "external_service"],
    "security": {"allowed_domains": ["api.mail.example.com", "*.cdn.example.com"], "injected_credentials": [GOOD]},
    "config": [
        {"name": "api_key", "type": "CONFIG_FIELD_TYPE_SECRET"},
        {"name": "region", "type": "CONFIG_FIELD_TYPE_STRING"},
    ],
}


def _manifest(**credential: str) -> Any:
    data = copy.deepcopy(BASE)
    data["security"]["injected_credentials"] = [{**GOOD, **credential}]
    return load_manifest_bytes(json.dumps(data).encode())


def test_a_declared_credential_is_accepted_and_its_key_is_core_held() -> None:
    manifest = _manifest()
    validate_manifest(manifest, CATALOGUE)
    assert injected_config_keys(manifest) == {"api_key"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "*.cdn.example.com"}, "must be one exact host, not a wildcard"),
        ({"host": "x.cdn.example.com"}, "is not one of security.allowed_domains"),
        ({"host": "other.example.com"}, "is not one of security.allowed_domains"),
        ({"header": "Host"}, "a header the core sets or strips itself"),
        ({"header": "Proxy-Authorization"}, "a header the core sets or strips itself"),
        ({"header": "X-Vivified-Trace"}, "a header the core sets or strips itself"),
        ({"header": "bad header"}, "is not an HTTP header name"),
        ({"config_key": "region"}, "must name a config field of type secret"),
        ({"config_key": "absent"}, "must name a config field of type secret"),
        ({"value_prefix": "Bearer\r\nX: y"}, "printable ASCII"),
    ],
)
def test_a_bad_credential_is_refused_naming_the_entry(change: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_manifest(_manifest(**change), CATALOGUE)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and caught.value.reason == "MANIFEST_INVALID"
    assert "security.injected_credentials[0]" in caught.value.message and message in caught.value.message


def test_the_same_header_for_a_host_twice_is_refused() -> None:
    data = copy.deepcopy(BASE)
    data["security"]["injected_credentials"] = [GOOD, {**GOOD, "header": "authorization"}]
    with pytest.raises(InvalidArgument) as caught:
        validate_manifest(load_manifest_bytes(json.dumps(data).encode()), CATALOGUE)
    assert "listed twice" in caught.value.message
