"""Manifest entries are checked against the generated descriptors: each
`provides`/`calls` entry must be a unary operation of a plugin contract, each
`publishes`/`subscribes` entry a canonical event; a refusal names the entry
in its message and in ErrorInfo metadata (`field`, `entry`)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest

COMM = "vivified.communication.v1.CommunicationPluginService"
CATALOGUE = TraitCatalogue.load_default()


def _manifest(**fields: Any) -> PluginManifest:
    data = {
        "id": "mailer",
        "name": "Mailer",
        "version": "1.0.0",
        "contracts": [COMM],
        "traits": ["communication_plugin"],
    }
    data.update(fields)
    return json_format.ParseDict(data, PluginManifest())


@pytest.mark.parametrize(
    ("fields", "field", "entry", "needle"),
    [
        (
            {"provides": [f"{COMM}/SendMessage", f"{COMM}/SendMail"]},
            "provides[1]",
            f"{COMM}/SendMail",
            "has no method 'SendMail' (it has SendMessage, GetMessageStatus)",
        ),
        (
            {"provides": ["vivified.admin.v1.PluginAdminService/ApprovePlugin"]},
            "provides[0]",
            "vivified.admin.v1.PluginAdminService/ApprovePlugin",
            "'vivified.admin.v1.PluginAdminService' is not a plugin contract",
        ),
        (
            {"provides": ["vivified.mail.v1.MailService/Send"]},
            "provides[0]",
            "vivified.mail.v1.MailService/Send",
            "'vivified.mail.v1.MailService' is not a plugin contract",
        ),
        ({"provides": [f"{COMM}"]}, "provides[0]", COMM, "not of the form pkg.Service/Method"),
        (
            {"provides": ["vivified.storage.v1.StoragePluginService/StoreObject"]},
            "provides[0]",
            "vivified.storage.v1.StoragePluginService/StoreObject",
            "not in contracts",
        ),
        (
            {"calls": [{"plugin_id": "vault", "method": "vivified.storage.v1.StoragePluginService/Store"}]},
            "calls[0].method",
            "vivified.storage.v1.StoragePluginService/Store",
            "has no method 'Store' (it has StoreObject, RetrieveObject)",
        ),
        (
            {"calls": [{"plugin_id": "vault", "method": "vivified.egress.v1.EgressProxyService/Connect"}]},
            "calls[0].method",
            "vivified.egress.v1.EgressProxyService/Connect",
            "is not a plugin contract",
        ),
        (
            {"subscribes": ["vivified.events.v1.UserCreated", "vivified.events.v1.UserDeleted"]},
            "subscribes[1]",
            "vivified.events.v1.UserDeleted",
            "not a canonical event type",
        ),
        (
            {"publishes": ["vivified.events.v1.Email*"]},
            "publishes[0]",
            "vivified.events.v1.Email*",
            "not a canonical event type",
        ),
    ],
)
def test_a_mismatch_with_the_contracts_names_the_entry(
    fields: dict[str, Any], field: str, entry: str, needle: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_manifest(_manifest(**fields), CATALOGUE)
    assert refused.value.reason == "MANIFEST_INVALID"
    assert needle in refused.value.message
    assert dict(refused.value.metadata) == {"field": field, "entry": entry}
