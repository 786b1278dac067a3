"""`create-plugin --lang node`'s rendering for every contract the core knows:
the manifest passes the core's validator, every RPC has a typed handler under
protoc-gen-es's name for it, the SDK and gen/ts are depended on by path, and
field names follow protoc-gen-es (lowerCamelCase; real oneof members left out
of the echo). Compiling and running the result is test_create_plugin_node_e2e."""

from __future__ import annotations

import json
import pathlib

import pytest

from vivified.communication.v1 import communication_pb2 as comm
from vivified.core.cli._create_plugin import create
from vivified.core.cli._create_plugin_node import local_name, sdk_directory
from vivified.core.contracts import CONTRACT_SERVICES
from vivified.core.manifest import load_manifest_file, validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.events.v1 import events_pb2


@pytest.mark.parametrize("contract", sorted(CONTRACT_SERVICES))
def test_every_contract_renders_a_node_project(tmp_path: pathlib.Path, contract: str) -> None:
    project = create("gen-node", contract, tmp_path, "node")
    assert project.lang == "node"
    manifest = load_manifest_file(project.path / "manifest.yaml")
    validate_manifest(manifest, TraitCatalogue.load_default())
    service = CONTRACT_SERVICES[contract]
    assert list(manifest.provides) == [f"{contract}/{m.name}" for m in service.methods]
    source = (project.path / "src" / "plugin.ts").read_text()
    for method in service.methods:
        assert f"      {method.name[0].lower()}{method.name[1:]}: (request) => {{" in source
        assert f'this.served.push("{method.name}")' in source
    assert f"typedContract({service.name}, this.handlers())" in source
    package = json.loads((project.path / "package.json").read_text())
    sdk = sdk_directory()
    assert package["dependencies"] == {
        "@vivified/sdk": f"file:{sdk}",
        "@vivified/gen": f"file:{sdk.parent.parent / 'gen' / 'ts'}",
    }
    assert package["main"] == "dist/src/main.js" and "node --test" in package["scripts"]["test"]


def test_field_names_follow_protoc_gen_es() -> None:
    fields = comm.CanonicalMessage.DESCRIPTOR.fields_by_name
    assert local_name(fields["message_id"]) == "messageId"
    assert local_name(fields["content_type"]) == "contentType"


def test_real_oneof_members_are_not_echoed(tmp_path: pathlib.Path) -> None:
    # SubscribeRequest's members sit in a real oneof: protoc-gen-es nests them under `request`.
    oneof = events_pb2.SubscribeRequest.DESCRIPTOR.fields_by_name["open"].containing_oneof
    assert oneof is not None and oneof.name == "request"
    from vivified.core.cli._create_plugin_node import _in_oneof

    assert _in_oneof(events_pb2.SubscribeRequest.DESCRIPTOR.fields_by_name["open"])
    assert not _in_oneof(comm.CanonicalMessage.DESCRIPTOR.fields_by_name["message_id"])


def test_create_plugin_refuses_an_unknown_language(tmp_path: pathlib.Path) -> None:
    from vivified.core.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as refused:
        create("gen-x", "communication", tmp_path, "cobol")
    assert refused.value.reason == "UNKNOWN_LANGUAGE"
    assert list(tmp_path.iterdir()) == []
