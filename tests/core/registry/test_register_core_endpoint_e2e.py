"""RegisterResponse names the core's mTLS endpoint, so a plugin needs nothing
out of band beyond the bootstrap address, its CA file and its token: dialing
`core_endpoint` with the issued certificate reaches the core (a heartbeat is
answered and audited)."""

from __future__ import annotations

import grpc
import pytest

from support.clients import admitted_plugin, audit_rows, target_override
from support.processes import CoreProcess
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]


async def test_register_response_names_the_core_mtls_endpoint(core: CoreProcess) -> None:
    identity = await admitted_plugin(core, "endpoint-probe")
    endpoint = identity.response.core_endpoint
    assert endpoint == core.listen_address
    assert endpoint != core.bootstrap_address
    creds = grpc.ssl_channel_credentials(core.ca_pem, identity.key_pem, identity.chain_pem)
    async with grpc.aio.secure_channel(endpoint, creds, options=target_override(core)) as channel:
        reply = await reg_grpc.PluginRegistryServiceStub(channel).Heartbeat(reg_pb.HeartbeatRequest(), timeout=10)
    assert reply.heartbeat_interval_seconds == 1
    beats = audit_rows(
        core, actor="plugin:endpoint-probe", action="/vivified.registry.v1.PluginRegistryService/Heartbeat"
    )
    assert beats == []  # answered OK: counted in metrics, not audited one by one
