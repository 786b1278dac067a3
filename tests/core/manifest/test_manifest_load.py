"""I1: parsing manifest bytes (YAML or JSON) into a PluginManifest, refusing bad input."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from vivified.core.errors import InvalidArgument
from vivified.core.manifest import (
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_NODES,
    REQUIRED_KEYS,
    load_manifest_bytes,
    load_manifest_file,
)
from vivified.core.manifest._yaml import LOADERS, load_yaml
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.options.v1.options_pb2 import Classification

VALID: dict[str, Any] = {
    "id": "email-gateway",
    "name": "Email Gateway",
    "version": "1.2.0",
    "description": "Sends email.",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin", "external_service", "handles_pii", "audit_required"],
    "security": {"allowed_domains": ["smtp.example.com"]},
    "compliance": {"data_classifications": ["CLASSIFICATION_PII"], "retention_days": 30},
}

VALID_YAML = b"""\
id: email-gateway
name: Email Gateway
version: 1.2.0
description: Sends email.
contracts:
  - vivified.communication.v1.CommunicationPluginService
traits: [communication_plugin, external_service, handles_pii, audit_required]
security:
  allowed_domains: [smtp.example.com]
compliance:
  data_classifications: [CLASSIFICATION_PII]
  retention_days: 30
"""


def refused(data: bytes) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        load_manifest_bytes(data, source="test.yaml")
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.reason, err.domain) == ("MANIFEST_INVALID", "vivified.registry")
    return err


def as_json(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_i1_valid_yaml_and_json_give_the_same_message() -> None:
    from_yaml = load_manifest_bytes(VALID_YAML)
    from_json = load_manifest_bytes(as_json(VALID))
    assert isinstance(from_yaml, PluginManifest)
    assert from_yaml == from_json
    assert from_yaml.id == "email-gateway"
    assert list(from_yaml.compliance.data_classifications) == [Classification.CLASSIFICATION_PII]
    assert from_yaml.compliance.retention_days == 30


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_i1_missing_required_field_is_named(key: str) -> None:
    data = copy.deepcopy(VALID)
    del data[key]
    err = refused(as_json(data))
    assert "missing required key" in err.message and key in err.message
    assert "test.yaml" in err.message


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"owner": "me"}, "owner"),
        ({"security": {"allowed_domains": [], "egress": ["x"]}}, "security: unknown key 'egress'"),
        ({"compliance": {"retentionDays": 3000}}, "retentionDays"),  # camelCase alias: one spelling only
        ({"Id": "x"}, "Id"),
    ],
)
def test_i1_unknown_fields_refused(patch: dict[str, Any], named: str) -> None:
    err = refused(as_json({**VALID, **patch}))
    assert "unknown key" in err.message and named in err.message


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"id": 5}, "id: expected a string, got an integer"),
        ({"id": None}, "id: expected a string, got null"),
        ({"name": ["a"]}, "name: expected a string, got a list"),
        ({"contracts": "vivified.storage.v1.StoragePluginService"}, "contracts: expected a list"),
        ({"traits": [1]}, "traits[0]: expected a string, got an integer"),
        ({"traits": [True]}, "traits[0]: expected a string, got a boolean"),
        ({"security": ["smtp.example.com"]}, "security: expected a mapping"),
        ({"compliance": {"retention_days": "3000"}}, "compliance.retention_days: expected an integer"),
        ({"compliance": {"retention_days": 3000.0}}, "compliance.retention_days: expected an integer"),
        ({"compliance": {"retention_days": True}}, "compliance.retention_days: expected an integer"),
        ({"compliance": {"retention_days": 2**31}}, "compliance.retention_days: integer out of range"),
        ({"compliance": {"data_classifications": [4]}}, "compliance.data_classifications[0]"),
        ({"compliance": {"data_classifications": ["PII"]}}, "compliance.data_classifications[0]"),
        ({"id": "\ud800"}, "id: contains an unpaired surrogate"),
    ],
)
def test_i1_wrong_types_refused(patch: dict[str, Any], path: str) -> None:
    err = refused(as_json({**VALID, **patch}))
    assert path in err.message


def test_i1_yaml_1_1_implicit_types_are_not_applied() -> None:
    # `no` -> False and `2001-01-01` -> date would silently change a manifest's meaning.
    data = VALID_YAML.replace(b"name: Email Gateway", b"name: no").replace(b"version: 1.2.0", b"version: 2001-01-01")
    manifest = load_manifest_bytes(data)
    assert (manifest.name, manifest.version) == ("no", "2001-01-01")
    assert "expected a string, got a number" in refused(VALID_YAML.replace(b"1.2.0", b"1.2")).message


def test_i1_10mb_manifest_refused_fast(tmp_path: Path) -> None:
    huge = VALID_YAML + b"description: " + b"x" * (10 * 1024 * 1024) + b"\n"
    start = time.perf_counter()
    err = refused(huge)
    assert time.perf_counter() - start < 0.5
    assert str(MAX_MANIFEST_BYTES) in err.message
    path = tmp_path / "manifest.yaml"
    path.write_bytes(huge)
    start = time.perf_counter()
    with pytest.raises(InvalidArgument) as info:
        load_manifest_file(path)
    assert time.perf_counter() - start < 0.5
    assert info.value.reason == "MANIFEST_INVALID"


def test_i1_size_limit_boundary() -> None:
    padding = MAX_MANIFEST_BYTES - len(VALID_YAML)
    at_limit = VALID_YAML + b"#" * (padding - 1) + b"\n"
    assert len(at_limit) == MAX_MANIFEST_BYTES
    assert load_manifest_bytes(at_limit).id == "email-gateway"
    refused(at_limit + b"\n")


@pytest.mark.parametrize(
    "document",
    [
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"id": ' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"id": ' + "[" * 10_000,  # unterminated as well
    ],
)
def test_i1_10k_nested_json_refused(document: str) -> None:
    assert "nesting" in refused(document.encode()).message


@pytest.mark.parametrize(
    "document",
    [
        "[" * 10_000 + "]" * 10_000,
        "id: " + "[" * 10_000 + "]" * 10_000,
        "id:\n" + "- " * 10_000 + "x\n",
        "".join(f"{'  ' * level}k{level}:\n" for level in range(40)) + "  " * 40 + "leaf\n",
        "id: " + "{a: " * 10_000 + "}" * 10_000,
    ],
)
def test_i1_10k_nested_yaml_refused(document: str) -> None:
    assert "nesting" in refused(document.encode()).message


def test_i1_nesting_limit_boundary() -> None:
    inner = "1"
    for _ in range(MAX_DEPTH - 1):
        inner = f"[{inner}]"
    template = json.dumps({**VALID, "id": "@"})
    # Depth exactly at the limit (outer mapping + 15 lists) passes the nesting
    # guard and fails on type instead; one more level fails on nesting.
    for parse_as_yaml in (False, True):
        prefix = "# yaml\n" if parse_as_yaml else ""
        at_limit = prefix + template.replace('"@"', inner)
        assert "id: expected a string" in refused(at_limit.encode()).message
        too_deep = prefix + template.replace('"@"', f"[{inner}]")
        assert "nesting" in refused(too_deep.encode()).message


def test_i1_brackets_inside_json_strings_do_not_count_as_nesting() -> None:
    data = {**VALID, "description": "[{" * 500 + '\\"[' * 50}
    assert load_manifest_bytes(as_json(data)).description == data["description"]


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": "email-gateway", "id": "core"}',
        b'{"compliance": {"retention_days": 1, "retention_days": 3000}, "id": "x"}',
        VALID_YAML + b"id: core\n",
        VALID_YAML.replace(b"  retention_days: 30\n", b"  retention_days: 30\n  retention_days: 3000\n"),
        VALID_YAML + b"'id': core\n",  # same key, differently quoted
    ],
)
def test_i1_duplicate_keys_with_conflicting_values_refused(document: bytes) -> None:
    assert "duplicate key" in refused(document).message


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"a: &x [1]\nb: *x\n", "anchors and aliases"),
        (VALID_YAML + b"x: !!python/object:os.system ls\n", "tag"),
        (VALID_YAML.replace(b"name: Email Gateway", b"name: !!binary aGk="), "tag"),
        (VALID_YAML.replace(b"name: Email Gateway", b"name: !custom x"), "tag"),
        (b"? [a]\n: b\n", "keys must be strings"),
        (b"1: x\n", "keys must be strings"),
        (VALID_YAML + b"<<: {id: core}\n", "unknown key '<<'"),
        (VALID_YAML + b"---\nid: other\n", "single document"),
        (b'id: "a\x00b"\n', "not valid YAML"),
        (b"id: [unclosed\n", "not valid YAML"),
    ],
)
def test_i1_yaml_features_outside_plain_data_refused(document: bytes, fragment: str) -> None:
    assert fragment in refused(document).message


@pytest.mark.parametrize(
    "document",
    [
        b'{"id": NaN}',
        b'{"id": Infinity}',
        b'{"id": 1' + b"0" * 5000 + b"}",
        b'{"id": "x",}',
        b'{"id": "x"} trailing',
    ],
)
def test_i1_invalid_json_refused(document: bytes) -> None:
    assert "not valid JSON" in refused(document).message


@pytest.mark.parametrize(
    "document",
    [b"", b"   \n", b"- a\n- b\n", b"just a string\n", b"42", b"[]", b"null"],
)
def test_i1_non_mapping_documents_refused(document: bytes) -> None:
    assert "mapping" in refused(document).message


def test_i1_encoding() -> None:
    assert "not UTF-8" in refused(b"id: \xff\xfe\n").message
    assert load_manifest_bytes(b"\xef\xbb\xbf" + VALID_YAML).id == "email-gateway"
    assert load_manifest_bytes(b"\xef\xbb\xbf" + as_json(VALID)).id == "email-gateway"


def test_i1_non_bytes_and_missing_file_refused(tmp_path: Path) -> None:
    refused(b"id: x".decode())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as info:
        load_manifest_file(tmp_path / "absent.yaml")
    assert info.value.reason == "MANIFEST_INVALID" and "cannot read" in info.value.message


def test_i1_load_file_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_bytes(VALID_YAML)
    assert load_manifest_file(path) == load_manifest_bytes(VALID_YAML)


@pytest.mark.parametrize("as_yaml", [False, True])
def test_i1_value_count_cap_is_the_same_for_json_and_yaml(as_yaml: bool) -> None:
    prefix = b"# yaml\n" if as_yaml else b""
    # The mapping, its key and the list are three values; the items make up the rest.
    at_cap = prefix + as_json({"id": [None] * (MAX_NODES - 3)})
    assert "missing required key" in refused(at_cap).message
    over = prefix + as_json({"id": [None] * (MAX_NODES - 2)})
    assert f"more than {MAX_NODES} values" in refused(over).message


@pytest.mark.serial  # a wall-clock bound: runs alone (tools/test.sh)
def test_i1_many_values_refused_fast() -> None:
    document = b"id: [" + b"~," * 32_000 + b"]"
    start = time.perf_counter()
    assert "values" in refused(document).message
    assert time.perf_counter() - start < 0.5


_YAML_REFUSALS = [
    "a: 1\na: 2\n",
    "a: &x 1\nb: *x\n",
    "a: !!binary aGk=\n",
    "a: !!python/name:os.system\n",
    "? [a]\n: b\n",
    "1: x\n",
    "null: x\n",
    "- " * 40 + "x\n",
    "[" * 40 + "]" * 40,
    "a: 1\n---\nb: 2\n",
    "a: \x07\n",
]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("document", _YAML_REFUSALS)
def test_i1_every_yaml_loader_refuses_the_same(loader: type[Any], document: str) -> None:
    # libyaml (when built in) and the pure-Python parser must enforce the same rules.
    with pytest.raises(yaml.YAMLError):
        load_yaml(document, loader)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda cls: cls.__name__)
def test_i1_every_yaml_loader_reads_the_same(loader: type[Any]) -> None:
    expected = load_yaml(VALID_YAML.decode(), LOADERS[-1])
    assert load_yaml(VALID_YAML.decode(), loader) == expected
    assert load_yaml("a: no\nb: 0o17\nc: 017\nd: 0x1F\ne: .inf\nf: ~\ng: True\n", loader) == {
        "a": "no",
        "b": 15,
        "c": 17,
        "d": 31,
        "e": float("inf"),
        "f": None,
        "g": True,
    }
