"""Event-bus declarations in a manifest: `publishes` and `subscribes` list exact
canonical event types; wildcards and look-alikes are refused at approval (C7)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from vivified.core.errors import InvalidArgument
from vivified.core.events import CANONICAL_EVENT_TYPES
from vivified.core.manifest import validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest

CATALOGUE = TraitCatalogue.load_default()
USER_CREATED = "vivified.events.v1.UserCreated"


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


def test_every_canonical_type_may_be_declared() -> None:
    assert {USER_CREATED, "vivified.events.v1.EmailSent", "vivified.events.v1.SecurityAlert"} <= set(
        CANONICAL_EVENT_TYPES
    )
    types = sorted(CANONICAL_EVENT_TYPES)
    validate_manifest(_manifest(publishes=types, subscribes=types), CATALOGUE)


@pytest.mark.parametrize("field", ["publishes", "subscribes"])
@pytest.mark.parametrize(
    "event_type",
    [
        "*",
        ">",
        "..",
        "",
        "vivified.events.v1.*",
        "vivified.events.v1.>",
        "vivified.events.*.UserCreated",
        f"{USER_CREATED}\x00suffix",
        f"{USER_CREATED} ",
        USER_CREATED.upper(),
        "vivified.events.v1.usercreated",
        "vivified.events.v1.Event",  # the envelope, not an event
        "vivified.storage.v1.StoredObject",  # a real message, not a canonical event
    ],
)
def test_wildcards_and_lookalikes_are_refused(field: str, event_type: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_manifest(_manifest(**{field: [event_type]}), CATALOGUE)
    assert refused.value.reason == "MANIFEST_INVALID"
    assert "not a canonical event type" in refused.value.message
    assert "\x00" not in refused.value.message  # shown escaped


@pytest.mark.parametrize("field", ["publishes", "subscribes"])
def test_a_type_listed_twice_is_refused(field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_manifest(_manifest(**{field: [USER_CREATED, USER_CREATED]}), CATALOGUE)
    assert "listed twice" in refused.value.message
