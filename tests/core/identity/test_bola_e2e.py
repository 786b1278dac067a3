"""C4, broken object-level authorisation, through a real core: a user or a
plugin naming another's object by id — a user account, an API key, a
plugin's configuration — is refused exactly as for an id that does not
exist (same code, reason and message), each attempt is one audit record,
and the other's object is unchanged."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from support.clients import admitted_plugin, audit_rows, bootstrap_channel, error_info, operator_channel, plugin_channel
from support.processes import CoreProcess
from support.users import bearer, expect_error, login, users_call, users_pb
from vivified.config.v1 import config_pb2 as config_pb
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc

pytestmark = pytest.mark.asyncio

PASSWORD = "CANARY-bola-pw-2c8e61f0"
USERS = "/vivified.identity.v1.UserAdminService/"
KEYS = "/vivified.identity.v1.ApiKeyService/"
CONFIG = "/vivified.config.v1.ConfigService/"
MISSING_USER = "usr_" + "0" * 24
MISSING_KEY = "vak_" + "0" * 24


async def _keys(core: CoreProcess, method: str, request: object, token: str) -> object:
    async with bootstrap_channel(core) as channel:
        return await getattr(keys_grpc.ApiKeyServiceStub(channel), method)(request, metadata=bearer(token), timeout=10)


def _same_shape(
    existing: grpc.aio.AioRpcError, missing: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str
) -> None:
    assert existing.code() == missing.code() == code
    assert error_info(existing).reason == error_info(missing).reason == reason
    assert existing.details() == missing.details()
    assert dict(error_info(existing).metadata) == dict(error_info(missing).metadata)


async def test_c4_objects_of_others_look_like_objects_that_do_not_exist(core: CoreProcess) -> None:
    async with operator_channel(core) as channel:
        stub = users_grpc.UserAdminServiceStub(channel)
        ann = (
            await stub.CreateUser(
                users_pb.CreateUserRequest(username="ann", password=PASSWORD, roles=["viewer"]), timeout=10
            )
        ).user
        ben = (
            await stub.CreateUser(
                users_pb.CreateUserRequest(username="ben", password=PASSWORD, roles=["viewer"]), timeout=10
            )
        ).user
    ann_token = (await login(core, "ann", PASSWORD)).tokens.access_token
    ben_token = (await login(core, "ben", PASSWORD)).tokens.access_token
    ben_key = await _keys(core, "CreateApiKey", keys_pb.CreateApiKeyRequest(name="ro", scopes=["viewer"]), ben_token)

    def attempts(action: str) -> list[object]:
        return audit_rows(core, action=action, actor=f"user:{ann.user_id}")

    # Read another user's account by id.
    other = await expect_error(users_call(core, "GetUser", users_pb.GetUserRequest(user_id=ben.user_id), ann_token))
    assert len(attempts(USERS + "GetUser")) == 1
    missing = await expect_error(users_call(core, "GetUser", users_pb.GetUserRequest(user_id=MISSING_USER), ann_token))
    assert len(attempts(USERS + "GetUser")) == 2
    _same_shape(other, missing, grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    assert {r.outcome for r in attempts(USERS + "GetUser")} == {"NOT_FOUND"}

    # Update another user's account by id (give them admin).
    mask = field_mask_pb2.FieldMask(paths=["roles"])
    other = await expect_error(
        users_call(
            core,
            "UpdateUser",
            users_pb.UpdateUserRequest(user_id=ben.user_id, roles=["admin"], update_mask=mask),
            ann_token,
        )
    )
    assert len(attempts(USERS + "UpdateUser")) == 1
    missing = await expect_error(
        users_call(
            core,
            "UpdateUser",
            users_pb.UpdateUserRequest(user_id=MISSING_USER, roles=["admin"], update_mask=mask),
            ann_token,
        )
    )
    _same_shape(other, missing, grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED")
    rows = attempts(USERS + "UpdateUser")
    assert len(rows) == 2 and {(r.decision, r.rule_id) for r in rows} == {("deny", "user-admin")}
    async with operator_channel(core) as channel:
        still = await users_grpc.UserAdminServiceStub(channel).GetUser(
            users_pb.GetUserRequest(user_id=ben.user_id), timeout=10
        )
    assert list(still.user.traits) == ["viewer"]

    # Revoke another user's API key by id.
    other = await expect_error(
        _keys(core, "RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id=ben_key.key.key_id), ann_token)
    )
    assert len(attempts(KEYS + "RevokeApiKey")) == 1
    missing = await expect_error(
        _keys(core, "RevokeApiKey", keys_pb.RevokeApiKeyRequest(key_id=MISSING_KEY), ann_token)
    )
    assert len(attempts(KEYS + "RevokeApiKey")) == 2
    _same_shape(other, missing, grpc.StatusCode.NOT_FOUND, error_info(other).reason)
    assert error_info(other).reason
    listed = await _keys(core, "ListApiKeys", keys_pb.ListApiKeysRequest(), ben_token)
    assert [(k.key_id, k.revoked) for k in listed.keys] == [(ben_key.key.key_id, False)]
    assert ben_key.key.key_id not in str(await _keys(core, "ListApiKeys", keys_pb.ListApiKeysRequest(), ann_token))

    # A plugin writes another plugin's configuration by id.
    await admitted_plugin(core, "bola-target", config=[{"name": "smtp_host", "type": "CONFIG_FIELD_TYPE_STRING"}])
    intruder = await admitted_plugin(core, "bola-intruder")
    async with plugin_channel(core, intruder) as channel:
        config = config_grpc.ConfigServiceStub(channel)

        async def set_for(plugin_id: str) -> grpc.aio.AioRpcError:
            request = config_pb.SetPluginConfigValueRequest(
                plugin_id=plugin_id, key="smtp_host", value="evil.example", reason="takeover"
            )
            return await expect_error(config.SetPluginConfigValue(request, timeout=10))

        action = CONFIG + "SetPluginConfigValue"
        other = await set_for("bola-target")
        assert len(audit_rows(core, action=action, actor="plugin:bola-intruder")) == 1
        missing = await set_for("bola-ghost")
        _same_shape(other, missing, grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED")
        assert len(audit_rows(core, action=action, actor="plugin:bola-intruder")) == 2
    async with operator_channel(core) as channel:
        target = await config_grpc.ConfigServiceStub(channel).GetPluginConfig(
            config_pb.GetPluginConfigRequest(plugin_id="bola-target"), timeout=10
        )
    assert all(v.value != "evil.example" for v in target.values)
