"""AuditQueryService and AccessCatalogueService on a real core: operators and
`audit_viewer` users list (filtered, paged) and verify the log; a viewer is
refused with one audit record; every query is itself audited; viewers read
the trait catalogue and the roles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.processes import CoreProcess
from support.users import bearer, expect_error, login, users_pb
from vivified.admin.v1 import access_catalogue_pb2 as access_pb
from vivified.admin.v1 import access_catalogue_pb2_grpc as access_grpc
from vivified.admin.v1 import audit_query_pb2 as pb
from vivified.admin.v1 import audit_query_pb2_grpc as audit_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

LIST = "/vivified.admin.v1.AuditQueryService/ListAuditRecords"
PASSWORD = "CANARY-auditor-pw-3e8b21"


async def _token(core: CoreProcess, username: str, role: str) -> tuple[str, str]:
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=[role]), timeout=10
        )
    signed_in = await login(core, username, PASSWORD)
    return str(signed_in.tokens.access_token), str(created.user.user_id)


async def _as_user(core: CoreProcess, token: str, method: str, request: Any) -> Any:
    async with bootstrap_channel(core) as channel:
        return await getattr(audit_grpc.AuditQueryServiceStub(channel), method)(
            request, metadata=bearer(token), timeout=15
        )


async def test_audit_viewer_lists_pages_filters_and_verifies(core: CoreProcess) -> None:
    async with operator_channel(core) as channel:
        started = await audit_grpc.AuditQueryServiceStub(channel).ListAuditRecords(
            pb.ListAuditRecordsRequest(action="core.start"), timeout=10
        )
    assert [(r.actor, r.seq) for r in started.records] == [("core:core", 1)]

    token, user_id = await _token(core, "olga", "operator")
    actor = f"user:{user_id}"
    for _ in range(2):
        await _as_user(core, token, "ListAuditRecords", pb.ListAuditRecordsRequest(page_size=1))
    # Each query left its own record; newest first, one per page.
    first = await _as_user(core, token, "ListAuditRecords", pb.ListAuditRecordsRequest(actor=actor, page_size=1))
    assert [(r.action, r.outcome, r.decision) for r in first.records] == [(LIST, "OK", "allow")]
    second = await _as_user(
        core,
        token,
        "ListAuditRecords",
        pb.ListAuditRecordsRequest(actor=actor, page_size=1, page_token=first.next_page_token),
    )
    assert second.records[0].seq < first.records[0].seq and second.next_page_token == ""
    denies = await _as_user(core, token, "ListAuditRecords", pb.ListAuditRecordsRequest(decision="deny", actor=actor))
    assert list(denies.records) == []

    later = pb.ListAuditRecordsRequest(actor=actor)
    later.start_time.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert list((await _as_user(core, token, "ListAuditRecords", later)).records) == []
    earlier = pb.ListAuditRecordsRequest(actor=actor)
    earlier.end_time.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert len((await _as_user(core, token, "ListAuditRecords", earlier)).records) == 6

    bad = pb.ListAuditRecordsRequest(decision="maybe")
    err = await expect_error(_as_user(core, token, "ListAuditRecords", bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == "INVALID_REQUEST"

    verified = await _as_user(core, token, "VerifyAuditLog", pb.VerifyAuditLogRequest())
    assert verified.intact and verified.record_count > 8 and verified.problem == ""
    rows = audit_rows(core, actor=actor)
    assert [r.action.rsplit("/", 1)[1] for r in rows].count("ListAuditRecords") == 8


async def test_viewer_is_refused_with_one_audit_record(core: CoreProcess) -> None:
    token, user_id = await _token(core, "vince", "viewer")
    for method, request in (
        ("ListAuditRecords", pb.ListAuditRecordsRequest()),
        ("VerifyAuditLog", pb.VerifyAuditLogRequest()),
    ):
        err = await expect_error(_as_user(core, token, method, request))
        info = error_info(err)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-audit-query")
        rows = audit_rows(core, actor=f"user:{user_id}", action=f"/vivified.admin.v1.AuditQueryService/{method}")
        assert [(r.decision, r.reason) for r in rows] == [("deny", "POLICY_DENIED")]


async def test_traits_and_roles_served_to_viewers_and_operators(core: CoreProcess) -> None:
    token, user_id = await _token(core, "tess", "viewer")
    async with bootstrap_channel(core) as channel:
        stub = access_grpc.AccessCatalogueServiceStub(channel)
        traits = await stub.ListTraits(access_pb.ListTraitsRequest(), metadata=bearer(token), timeout=10)
        roles = await stub.ListRoles(access_pb.ListRolesRequest(), metadata=bearer(token), timeout=10)
    by_name = {t.name: t for t in traits.traits}
    assert list(by_name) == sorted(by_name) and by_name["operator"].requires == ["viewer"]
    assert by_name["handles_phi"].category == "data_access"
    role_map = {r.name: r for r in roles.roles}
    assert set(role_map) == {"admin", "operator", "viewer", "developer", "phi_handler", "pii_handler", "break_glass"}
    assert "audit_viewer" in role_map["operator"].traits
    assert role_map["admin"].mfa_required and role_map["phi_handler"].mfa_required
    assert not role_map["viewer"].mfa_required
    # Every role's traits are in the catalogue, with their requirements.
    for role in roles.roles:
        assert all(set(by_name[t].requires) <= set(role.traits) for t in role.traits)
    assert [
        r.outcome
        for r in audit_rows(core, actor=f"user:{user_id}")
        if r.action.startswith("/vivified.admin.v1.AccessCatalogueService/")
    ] == ["OK", "OK"]
    async with operator_channel(core) as channel:
        listed = await access_grpc.AccessCatalogueServiceStub(channel).ListRoles(
            access_pb.ListRolesRequest(), timeout=10
        )
    assert len(listed.roles) == 7
