"""I1 fuzz: whatever the bytes, loading yields a PluginManifest or MANIFEST_INVALID."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    load_manifest_bytes,
    manifest_sha256,
    validate_manifest,
)
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest

CATALOGUE = TraitCatalogue.load_default()

_KEYS = st.sampled_from(
    [
        "id",
        "name",
        "version",
        "description",
        "contracts",
        "traits",
        "security",
        "compliance",
        "allowed_domains",
        "data_classifications",
        "hipaa_controls",
        "retention_days",
        "x",
        "",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "CLASSIFICATION_PHI",
            "CLASSIFICATION_UNSPECIFIED",
            "handles_phi",
            "*.com",
            "vivified.storage.v1.StoragePluginService",
            "164.312(a)",
            "1.0.0",
            "\ud800",
        ]
    )
)
_JSON_LIKE = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS | st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
# Near-valid manifests: every required key present, so the fuzz reaches the
# shape walk, ParseDict and validation rather than stopping at "missing key".
_NEAR_VALID = st.fixed_dictionaries(
    {key: _JSON_LIKE for key in ("id", "name", "version", "contracts", "traits")},
    optional={"security": _JSON_LIKE, "compliance": _JSON_LIKE, "description": _JSON_LIKE},
)


_VALID: dict[str, Any] = {
    "id": "records-store",
    "name": "Records Store",
    "version": "1.0.0",
    "contracts": ["vivified.storage.v1.StoragePluginService"],
    "traits": ["storage_plugin", "handles_phi", "audit_required", "encryption_required", "external_service"],
    "security": {"allowed_domains": ["api.example.com"]},
    "compliance": {
        "data_classifications": ["CLASSIFICATION_PHI"],
        "hipaa_controls": ["164.312(a)"],
        "retention_days": 2555,
    },
}
_PLAUSIBLE = _SCALARS | st.from_regex(r"[a-z0-9.*:\[\]-]{0,20}", fullmatch=True)


@st.composite
def _mutated_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with one field replaced, so validation rules get exercised."""
    data: dict[str, Any] = copy.deepcopy(_VALID)
    section = draw(st.sampled_from(sorted(data)))
    value = draw(_PLAUSIBLE | st.lists(_PLAUSIBLE, max_size=4) | _JSON_LIKE)
    if isinstance(data[section], dict):
        data[section][draw(st.sampled_from(sorted(data[section])))] = value
    else:
        data[section] = value
    return data


def _dump_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _dump_yaml(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass")


def _encoded(value: Any) -> st.SearchStrategy[bytes]:
    return st.sampled_from([_dump_json, _dump_yaml]).map(lambda dump: dump(value))


_DOCUMENTS = (
    st.binary(max_size=2048)
    | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | (_JSON_LIKE | _NEAR_VALID | _mutated_valid()).flatmap(_encoded)
)


@settings(max_examples=300, deadline=None)
@given(_DOCUMENTS)
def test_i1_manifest_fuzz_never_crashes(document: bytes) -> None:
    try:
        manifest = load_manifest_bytes(document)
    except InvalidArgument as err:
        assert (err.reason, err.domain) == ("MANIFEST_INVALID", "vivified.registry")
        return
    assert isinstance(manifest, PluginManifest)
    # Whatever loaded has a digest, and the wire round trip keeps it.
    assert manifest_sha256(PluginManifest.FromString(manifest.SerializeToString())) == manifest_sha256(manifest)
    try:
        validate_manifest(manifest, CATALOGUE)
    except InvalidArgument as err:
        assert err.reason == "MANIFEST_INVALID"
