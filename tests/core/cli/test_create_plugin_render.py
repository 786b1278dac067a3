"""`create-plugin`'s rendering for every contract the core knows: the files
compile, the manifest passes the core's validator, every RPC is served, and
`[tool.vivified] module` names the package `up --plugin` runs."""

from __future__ import annotations

import pathlib
import tomllib

import pytest

from vivified.communication.v1 import communication_pb2 as comm
from vivified.core.cli._create_plugin import create, echo_sources
from vivified.core.cli._up import plugin_project
from vivified.core.contracts import CONTRACT_SERVICES
from vivified.core.manifest import load_manifest_file, validate_manifest
from vivified.core.traits import TraitCatalogue


@pytest.mark.parametrize("contract", sorted(CONTRACT_SERVICES))
def test_every_contract_renders_a_valid_project(tmp_path: pathlib.Path, contract: str) -> None:
    project = create("gen-plugin", contract, tmp_path)
    for path in project.path.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    manifest = load_manifest_file(project.path / "manifest.yaml")
    validate_manifest(manifest, TraitCatalogue.load_default())
    service = CONTRACT_SERVICES[contract]
    assert list(manifest.provides) == [f"{contract}/{m.name}" for m in service.methods]
    source = (project.path / "gen_plugin" / "plugin.py").read_text()
    for method in service.methods:
        assert f"    async def {method.name}(self, request" in source
    assert tomllib.loads((project.path / "pyproject.toml").read_text())["project"]["dependencies"] == ["vivified"]
    assert plugin_project(project.path).module == "gen_plugin"


def test_request_fields_are_echoed_by_name_and_type_one_level_down() -> None:
    echoed = echo_sources(comm.SendMessageRequest.DESCRIPTOR, comm.SendMessageResponse.DESCRIPTOR)
    assert [(field.name, source) for field, source in echoed] == [("message_id", "request.message.message_id")]
