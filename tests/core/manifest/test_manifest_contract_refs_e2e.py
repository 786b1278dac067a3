"""Against a real core: a manifest whose entries do not match the contracts is
refused at approval and at registration with INVALID_ARGUMENT, reason
MANIFEST_INVALID and ErrorInfo metadata naming the entry, and each refusal is
exactly one audit record (policy decision "allow": the chain let the call
through, the handler refused it)."""

from __future__ import annotations

import grpc
import pytest

from support.clients import (
    approve,
    audit_rows,
    bootstrap_channel,
    error_info,
    manifest_message,
    new_csr,
    operator_channel,
)
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]
COMM = "vivified.communication.v1.CommunicationPluginService"
APPROVE = "/vivified.admin.v1.PluginAdminService/ApprovePlugin"
REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"


async def test_approval_refuses_a_provides_entry_the_contract_lacks(core: CoreProcess) -> None:
    manifest = manifest_message("wrong-provides", provides=[f"{COMM}/SendMessage", f"{COMM}/SendMail"])
    before = len(audit_rows(core, action=APPROVE))
    async with operator_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(refused.value)
    assert info.reason == "MANIFEST_INVALID"
    assert dict(info.metadata) == {"field": "provides[1]", "entry": f"{COMM}/SendMail"}
    assert "has no method 'SendMail'" in (refused.value.details() or "")
    rows = audit_rows(core, action=APPROVE)[before:]
    assert [(r.decision, r.reason, r.outcome) for r in rows] == [("allow", "MANIFEST_INVALID", "INVALID_ARGUMENT")]


async def test_registration_refuses_a_subscription_to_no_such_event(core: CoreProcess) -> None:
    approved = manifest_message("wrong-subscribes", subscribes=["vivified.events.v1.UserCreated"])
    approval = await approve(core, approved)
    sent = manifest_message(
        "wrong-subscribes", subscribes=["vivified.events.v1.UserCreated", "vivified.events.v1.UserRemoved"]
    )
    before = len(audit_rows(core, action=REGISTER))
    async with bootstrap_channel(core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reg_grpc.PluginRegistryServiceStub(channel).Register(
                reg_pb.RegisterRequest(
                    manifest=sent,
                    csr_pem=new_csr("wrong-subscribes")[0].decode(),
                    join_token=approval.join_token,
                    endpoint="127.0.0.1:1",
                ),
                timeout=10,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(refused.value)
    assert info.reason == "MANIFEST_INVALID"
    assert dict(info.metadata) == {"field": "subscribes[1]", "entry": "vivified.events.v1.UserRemoved"}
    rows = audit_rows(core, action=REGISTER)[before:]
    assert [(r.decision, r.reason, r.outcome) for r in rows] == [("allow", "MANIFEST_INVALID", "INVALID_ARGUMENT")]
