"""The canonical manifest digest and the refusal of unknown wire fields."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
import yaml

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    canonical_json,
    load_manifest_bytes,
    manifest_sha256,
    reject_unknown_fields,
)
from vivified.manifest.v1.manifest_pb2 import PluginManifest

DATA: dict[str, Any] = {
    "id": "records-store",
    "name": "Records Store",
    "version": "2.0.0-rc.1",
    "description": "Keeps records.",
    "contracts": ["vivified.storage.v1.StoragePluginService"],
    "traits": ["storage_plugin", "handles_phi", "audit_required", "encryption_required"],
    "security": {"allowed_domains": []},
    "compliance": {
        "data_classifications": ["CLASSIFICATION_PHI"],
        "hipaa_controls": ["164.312(a)", "164.312(b)"],
        "retention_days": 2555,
    },
}

YAML_TEXT = b"""\
# Keys in another order, comments, block and flow style: same content.
compliance:
  retention_days: 2555
  hipaa_controls:
    - 164.312(a)
    - "164.312(b)"
  data_classifications: [CLASSIFICATION_PHI]
traits: [storage_plugin, handles_phi, audit_required, encryption_required]
contracts: [vivified.storage.v1.StoragePluginService]
description: 'Keeps records.'
version: 2.0.0-rc.1
name: Records Store
id: records-store
"""


def test_digest_equal_for_yaml_json_and_wire() -> None:
    from_json = load_manifest_bytes(json.dumps(DATA).encode())
    from_yaml = load_manifest_bytes(YAML_TEXT)
    from_pretty = load_manifest_bytes(json.dumps(DATA, indent=4, sort_keys=True).encode())
    from_safe_dump = load_manifest_bytes(yaml.safe_dump(DATA).encode())
    from_wire = PluginManifest.FromString(from_yaml.SerializeToString())
    # Built in code without ever touching `security`: no empty sub-message present.
    built = PluginManifest()
    built.CopyFrom(from_json)
    built.ClearField("security")
    assert from_json.HasField("security") and not built.HasField("security")
    manifests = (from_json, from_yaml, from_pretty, from_safe_dump, from_wire, built)
    assert len({manifest_sha256(m) for m in manifests}) == 1


def test_digest_is_sha256_of_the_canonical_json() -> None:
    manifest = load_manifest_bytes(json.dumps(DATA).encode())
    expected_text = json.dumps(
        {
            "compliance": {
                "data_classifications": ["CLASSIFICATION_PHI"],
                "hipaa_controls": ["164.312(a)", "164.312(b)"],
                "retention_days": 2555,
            },
            "contracts": DATA["contracts"],
            "description": "Keeps records.",
            "id": "records-store",
            "name": "Records Store",
            "traits": DATA["traits"],
            "version": "2.0.0-rc.1",
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    assert canonical_json(manifest) == expected_text
    assert manifest_sha256(manifest) == hashlib.sha256(expected_text.encode()).hexdigest()


def test_digest_escapes_non_ascii_consistently() -> None:
    data = {**DATA, "description": "Caf\u00e9 \u202e"}
    manifest = load_manifest_bytes(json.dumps(data, ensure_ascii=False).encode())
    assert "\\u00e9" in canonical_json(manifest)
    assert manifest_sha256(manifest) == manifest_sha256(load_manifest_bytes(json.dumps(data).encode()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "records-store2"),
        (("name",), "Records store"),
        (("version",), "2.0.0"),
        (("description",), "Keeps records"),
        (("contracts",), ["vivified.identity.v1.IdentityPluginService"]),
        (("traits",), ["handles_phi", "storage_plugin", "audit_required", "encryption_required"]),
        (("security", "allowed_domains"), ["api.example.com"]),
        (("compliance", "data_classifications"), ["CLASSIFICATION_PHI", "CLASSIFICATION_PII"]),
        (("compliance", "hipaa_controls"), ["164.312(a)"]),
        (("compliance", "retention_days"), 2556),
    ],
)
def test_digest_changes_with_any_field(path: tuple[str, ...], value: Any) -> None:
    changed = copy.deepcopy(DATA)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    before = manifest_sha256(load_manifest_bytes(json.dumps(DATA).encode()))
    assert manifest_sha256(load_manifest_bytes(json.dumps(changed).encode())) != before


def test_unknown_wire_fields_are_invisible_to_the_digest_so_they_are_refused() -> None:
    clean = load_manifest_bytes(json.dumps(DATA).encode())
    reject_unknown_fields(clean)
    smuggled = PluginManifest.FromString(clean.SerializeToString() + b"\x7a\x03abc")  # field 15, bytes
    assert manifest_sha256(smuggled) == manifest_sha256(clean)
    with pytest.raises(InvalidArgument) as info:
        reject_unknown_fields(smuggled)
    assert info.value.reason == "MANIFEST_INVALID" and "field 15" in info.value.message
    nested = PluginManifest()
    nested.CopyFrom(clean)
    nested.security.MergeFromString(b"\x28\x01")  # field 5, varint
    with pytest.raises(InvalidArgument) as info:
        reject_unknown_fields(nested)
    assert "security field 5" in info.value.message
