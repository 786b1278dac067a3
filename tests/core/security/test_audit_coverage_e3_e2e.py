"""E3, audit coverage, through a real core: each security-relevant act —
authentication success and failure, an authorisation denial, registration,
certificate issue and revocation, API key issue and revocation, a policy
change (an approval, and the policy in force at start), an egress denial and
a read of PHI — creates exactly one audit record, with a UTC timestamp and
the verified actor. The core runs in a time zone far from UTC, so a local
timestamp would show."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest

from support.clients import (
    admitted_plugin,
    audit_rows,
    bootstrap_channel,
    new_csr,
    operator_channel,
    plugin_channel,
)
from support.lane import RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, core_running
from support.users import auth_call, auth_pb, bearer, code_at, expect_error, login, users_call, users_pb
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc
from vivified.sdk import target_metadata
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

PASSWORD = "CANARY-e3-pw-0b7d52ae"
AUTH = "/vivified.identity.v1.AuthService/"
USERS = "/vivified.identity.v1.UserAdminService/"
KEYS = "/vivified.identity.v1.ApiKeyService/"
ADMIN = "/vivified.admin.v1.PluginAdminService/"
REGISTRY = "/vivified.registry.v1.PluginRegistryService/"
FETCH = "/vivified.egress.v1.EgressProxyService/Fetch"


@pytest.fixture
def core(tmp_path: pathlib.Path) -> Iterator[CoreProcess]:
    # UTC+14: a timestamp taken in local time would be hours off.
    with core_running(
        tmp_path / "data", "--heartbeat-interval", "1", env=clean_env(TZ="Pacific/Kiritimati")
    ) as running:
        yield running


def _last_seq(core: CoreProcess) -> int:
    rows = audit_rows(core)
    return int(rows[-1].seq) if rows else 0


async def _one_record(core: CoreProcess, act: Callable[[], Awaitable[Any]], action: str, **expected: str) -> Any:
    """Run `act`; exactly one new record for `action`, timestamped in UTC now, matching `expected`."""
    since, before = _last_seq(core), dt.datetime.now(dt.UTC)
    result = await act()
    after = dt.datetime.now(dt.UTC)
    rows = [r for r in audit_rows(core, action=action) if r.seq > since]
    assert len(rows) == 1, (action, [tuple(r) for r in rows])
    row = rows[0]
    stamp = row.time if row.time.tzinfo else row.time.replace(tzinfo=dt.UTC)
    assert before - dt.timedelta(seconds=2) <= stamp <= after + dt.timedelta(seconds=2), (action, row.time)
    for column, value in expected.items():
        assert getattr(row, column) == value, (action, column, tuple(row))
    return result


async def _expect_failure(awaitable: Awaitable[Any]) -> grpc.aio.AioRpcError:
    return await expect_error(awaitable)


async def test_e3_each_security_act_is_one_utc_record_naming_the_verified_actor(
    core: CoreProcess, tmp_path: pathlib.Path
) -> None:
    # The policy in force at start is on record.
    [loaded] = audit_rows(core, action="policy.load")
    assert (loaded.actor, loaded.resource) == ("core:core", "packaged") and json.loads(loaded.detail)["sha256"]

    async with operator_channel(core) as channel:
        users = {
            name: (
                await users_grpc.UserAdminServiceStub(channel).CreateUser(
                    users_pb.CreateUserRequest(username=name, password=PASSWORD, roles=roles), timeout=10
                )
            ).user.user_id
            for name, roles in (("val", ["viewer"]), ("phoebe", ["phi_handler"]))
        }
    val = users["val"]

    # Authentication: success and failure.
    signed_in = await _one_record(core, lambda: login(core, "val", PASSWORD), AUTH + "Login", outcome="OK")
    # Before the password is checked the caller is anonymous; the record names the user it verified.
    assert json.loads(audit_rows(core, action=AUTH + "Login")[-1].detail)["user_id"] == val
    token = signed_in.tokens.access_token
    await _one_record(
        core,
        lambda: _expect_failure(login(core, "val", "wrong password!")),
        AUTH + "Login",
        outcome="UNAUTHENTICATED",
        reason="LOGIN_FAILED",
    )
    # Authorisation denial, by the verified user.
    await _one_record(
        core,
        lambda: _expect_failure(users_call(core, "ListUsers", users_pb.ListUsersRequest(), token)),
        USERS + "ListUsers",
        actor=f"user:{val}",
        decision="deny",
        reason="POLICY_DENIED",
    )

    # API key issue and revocation.
    async def keys(method: str, request: object) -> Any:
        async with bootstrap_channel(core) as channel:
            return await getattr(keys_grpc.ApiKeyServiceStub(channel), method)(
                request, metadata=bearer(token), timeout=10
            )

    key = await _one_record(
        core,
        lambda: keys("CreateApiKey", keys_pb.CreateApiKeyRequest(name="k", scopes=["viewer"])),
        KEYS + "CreateApiKey",
        actor=f"user:{val}",
        outcome="OK",
    )
    await _one_record(
        core,
        lambda: keys("RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id=key.key.key_id)),
        KEYS + "RevokeApiKey",
        actor=f"user:{val}",
        outcome="OK",
    )

    # Registration (its certificate issue is in the same record), renewal, revocation.
    plugin = await _one_record(
        core,
        lambda: admitted_plugin(core, "e3-plugin"),
        REGISTRY + "Register",
        resource="plugin/e3-plugin",
        outcome="OK",
    )

    async def renew() -> Any:
        csr, _ = new_csr("e3-plugin")
        async with plugin_channel(core, plugin) as channel:
            return await reg_grpc.PluginRegistryServiceStub(channel).RenewCertificate(
                reg_pb.RenewCertificateRequest(csr_pem=csr.decode()), timeout=10
            )

    await _one_record(core, renew, REGISTRY + "RenewCertificate", actor="plugin:e3-plugin", outcome="OK")

    # Egress denial, by the verified plugin.
    async def fetch() -> Any:
        async with plugin_channel(core, plugin) as channel:
            return await _expect_failure(
                egress_pb2_grpc.EgressProxyServiceStub(channel).Fetch(
                    egress_pb2.FetchRequest(method="GET", url="https://undeclared.example.com/"), timeout=10
                )
            )

    await _one_record(core, fetch, FETCH, actor="plugin:e3-plugin", decision="deny")

    async def revoke() -> Any:
        async with operator_channel(core) as channel:
            return await admin_grpc.PluginAdminServiceStub(channel).RevokePlugin(
                admin_pb.RevokePluginRequest(plugin_id="e3-plugin", reason="e3"), timeout=10
            )

    await _one_record(
        core, revoke, ADMIN + "RevokePlugin", actor="operator:admin", resource="plugin/e3-plugin", outcome="OK"
    )

    # A policy change: an approval granting traits (the manifest-derived rules follow it).
    vault = RecordingStore()
    manifest = write_manifest(tmp_path, "e3-vault", provides=[RETRIEVE_METHOD])
    runtime = await _one_record(
        core,
        lambda: started_plugin(core, manifest, [vault]),
        ADMIN + "ApprovePlugin",
        actor="operator:admin",
        resource="plugin/e3-vault",
        outcome="OK",
    )
    try:
        # A read of PHI, by the verified user who holds handles_phi.
        first = await login(core, "phoebe", PASSWORD)
        enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
        confirmed = await auth_call(
            core,
            "ConfirmMfa",
            auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),
        )
        phi_token = confirmed.tokens.access_token  # type: ignore[attr-defined]

        async def read_phi() -> Any:
            async with bootstrap_channel(core) as channel:
                return await storage_pb2_grpc.StoragePluginServiceStub(channel).RetrieveObject(
                    storage_pb2.RetrieveObjectRequest(object_key="chart"),
                    metadata=(*bearer(phi_token), *target_metadata("e3-vault")),
                    timeout=15,
                )

        await _one_record(core, read_phi, f"/{RETRIEVE_METHOD}", actor=f"user:{users['phoebe']}", outcome="OK")
        assert vault.calls == ["RetrieveObject"]
    finally:
        await runtime.stop("test over")
