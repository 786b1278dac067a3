"""`vivified manifest validate` gives, offline, exactly the verdict a real
core gives when an operator approves the same file: same message, same
reason; exit 1 naming the field, exit 0 (and the same sha256) when valid."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import grpc
import pytest
import yaml

from support.clients import approve, error_info
from support.processes import CoreProcess, run_vivified
from vivified.core.manifest import load_manifest_file

pytestmark = pytest.mark.asyncio

REPO = pathlib.Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "id": "checked-plugin",
    "name": "Checked",
    "version": "0.1.0",
    "contracts": ["vivified.directory.v1.DirectoryService"],
    "traits": ["network_isolated"],
}
BAD = {
    "id": ({"id": "../core"}, "id"),
    "trait": ({"traits": ["no_such_trait"]}, "traits"),
    "provides": ({"provides": ["vivified.communication.v1.CommunicationPluginService/SendMessage"]}, "provides"),
    "event": ({"subscribes": ["vivified.events.v1.UserDeleted"]}, "subscribes"),
    "pii": ({"traits": ["handles_pii", "audit_required"]}, "compliance"),
    "calls": (
        {"calls": [{"plugin_id": "user-management", "method": "vivified.directory.v1.DirectoryService/Nope"}]},
        "calls[0].method",
    ),
}


def _validate(path: pathlib.Path) -> tuple[int, dict[str, Any]]:
    result = run_vivified("manifest", "validate", str(path), "--json")
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("case", sorted(BAD))
async def test_cli_and_core_give_the_same_refusal(core: CoreProcess, tmp_path: pathlib.Path, case: str) -> None:
    change, field = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    code, verdict = _validate(path)
    assert code == 1 and not verdict["valid"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await approve(core, load_manifest_file(path))
    assert refused.value.code().name == verdict["code"] == "INVALID_ARGUMENT"
    assert error_info(refused.value).reason == verdict["reason"] == "MANIFEST_INVALID"
    assert refused.value.details() == verdict["message"]
    if case != "trait":  # the trait catalogue words its own message
        assert verdict["field"] == field, verdict


async def test_a_valid_manifest_passes_with_the_digest_the_core_approves(core: CoreProcess) -> None:
    path = REPO / "plugins" / "user_management" / "manifest.yaml"
    code, verdict = _validate(path)
    assert code == 0 and verdict["valid"] and verdict["plugin_id"] == "user-management"
    approval = await approve(core, load_manifest_file(path), replace=True)
    assert approval.manifest_sha256 == verdict["manifest_sha256"]


async def test_human_output_names_the_field_and_reason(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**BASE, "version": "one"}))
    result = run_vivified("manifest", "validate", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}: version: ") and result.stdout.rstrip().endswith("[MANIFEST_INVALID]")
