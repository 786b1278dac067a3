"""`vivified manifest validate`: offline, the core's own validator — the same
message a running core gives at approval — exit 1 naming the field."""

from __future__ import annotations

import json
import pathlib

import grpc
import pytest
import yaml

from support.clients import approve, error_info
from support.processes import CoreProcess, run_vivified
from vivified.core.manifest import load_manifest_file

BUNDLED = pathlib.Path(__file__).parents[3] / "plugins" / "email_gateway" / "manifest.yaml"
BAD = {
    "id": "tunnel-abuser",
    "name": "n",
    "version": "1.0.0",
    "contracts": ["vivified.communication.v1.CommunicationPluginService"],
    "traits": ["communication_plugin", "external_service"],
    "security": {"allowed_tunnels": ["localhost:25"]},
}


def test_a_valid_manifest_passes() -> None:
    result = run_vivified("manifest", "validate", str(BUNDLED), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is True and verdict["plugin_id"] == "email-gateway"
    assert len(verdict["manifest_sha256"]) == 64


@pytest.mark.asyncio
async def test_an_invalid_manifest_fails_with_the_cores_own_message(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(BAD))
    result = run_vivified("manifest", "validate", str(path), "--json")
    assert result.returncode == 1
    verdict = json.loads(result.stdout)
    assert (verdict["valid"], verdict["reason"], verdict["field"]) == (
        False,
        "MANIFEST_INVALID",
        "security.allowed_tunnels",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await approve(core, load_manifest_file(path))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == verdict["reason"]
    assert caught.value.details() == verdict["message"]
    plain = run_vivified("manifest", "validate", str(path))
    assert plain.returncode == 1 and verdict["message"] in plain.stdout


def test_unreadable_and_unparseable_files_fail(tmp_path: pathlib.Path) -> None:
    missing = run_vivified("manifest", "validate", str(tmp_path / "none.yaml"), "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["field"] == ""
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**BAD, "trait": ["x"]}))
    typo = run_vivified("manifest", "validate", str(tmp_path / "typo.yaml"), "--json")
    assert typo.returncode == 1 and "trait" in json.loads(typo.stdout)["message"]
