"""The egress lane is served by the real core process, behind the chain."""

from __future__ import annotations

import grpc
import pytest

from support.clients import admitted_plugin, audit_rows, error_info, plugin_channel
from support.processes import CoreProcess
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

FETCH = "/vivified.egress.v1.EgressProxyService/Fetch"


async def test_plugin_without_external_service_is_denied_by_the_core(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "no-egress")
    async with plugin_channel(core, identity) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await egress_pb2_grpc.EgressProxyServiceStub(channel).Fetch(
                egress_pb2.FetchRequest(method="GET", url="https://api.example.com/"), timeout=10
            )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(denied.value)
    assert info.reason == "EGRESS_DENIED" and info.metadata["why"] == "trait_missing"
    rows = audit_rows(core, actor="plugin:no-egress", action=FETCH)
    assert [(r.decision, r.reason, r.outcome) for r in rows] == [("deny", "EGRESS_DENIED", "PERMISSION_DENIED")]
