"""`runtime.connect()` on a real core: a tunnel the manifest does not allow is
refused as a typed SDK error, with one audit record. (A working tunnel is
driven end to end by tests/plugins/email_gateway.)"""

from __future__ import annotations

import json
import pathlib

import pytest

from support.clients import audit_rows
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from vivified.sdk import InvalidArgumentError, PermissionDeniedError

pytestmark = pytest.mark.asyncio
CONNECT = "/vivified.egress.v1.EgressProxyService/Connect"


async def test_undeclared_tunnel_is_a_typed_refusal(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    manifest = write_manifest(
        tmp_path,
        "sdk-tunneller",
        traits=["storage_plugin", "external_service"],
        security={"allowed_tunnels": ["smtp.example.com:587"]},
    )
    runtime = await started_plugin(core, manifest, [RecordingStore()])
    try:
        with pytest.raises(PermissionDeniedError) as caught:
            await runtime.connect("smtp.example.com", 25, timeout=5)
        assert caught.value.reason == "EGRESS_DENIED"
        with pytest.raises(InvalidArgumentError) as literal:
            await runtime.connect("127.0.0.1", 587, timeout=5)
        assert literal.value.reason == "EGRESS_URL_INVALID"
    finally:
        await runtime.stop()
    rows = audit_rows(core, action=CONNECT, actor="plugin:sdk-tunneller")
    assert [(r.decision, r.outcome) for r in rows] == [("deny", "PERMISSION_DENIED"), ("allow", "INVALID_ARGUMENT")]
    assert json.loads(rows[0].detail)["why"] == "tunnel_not_allowed"
