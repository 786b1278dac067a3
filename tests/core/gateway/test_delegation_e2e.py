"""No confused deputy (SECURITY C5) on a real core with real plugins: a user's
call reaches plugin `relay` with a delegation token for `relay` alone; when
`relay` passes it on to `vault`, the core checks relay's manifest AND the
user's rights, names both in the audit record, and refuses the token from any
other plugin, forged, or after the user's session has ended."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.lane import COMMUNICATION, RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from support.users import auth_call, auth_pb, bearer, code_at, expect_error, login, users_pb
from vivified.communication.v1 import communication_pb2, communication_pb2_grpc
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.sdk import PluginRuntime, VivifiedSDKError, delegation_of, target_metadata
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

SEND = f"{COMMUNICATION}/SendMessage"
RETRIEVE = f"/{RETRIEVE_METHOD}"
PASSWORD = "CANARY-deputy-pw-9c41e7"


@dataclass
class Relay(communication_pb2_grpc.CommunicationPluginServiceServicer):
    """Fetches an object from `vault` for whoever it serves, passing the
    delegation token on; remembers what it received and how the call went."""

    runtime: PluginRuntime | None = None
    tokens: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    async def SendMessage(
        self, request: communication_pb2.SendMessageRequest, context: Any
    ) -> communication_pb2.SendMessageResponse:
        token = delegation_of(context)
        self.tokens.append(token)
        self.users.append(dict(context.invocation_metadata())["x-vivified-on-behalf-of"])
        assert self.runtime is not None
        try:
            await self.runtime.call("vault", storage_pb2.RetrieveObjectRequest(object_key="k"), on_behalf_of=token)
            self.outcomes.append(("OK", ""))
        except VivifiedSDKError as err:
            self.outcomes.append((err.code.name, err.reason))
        return communication_pb2.SendMessageResponse(
            message_id=request.message.message_id, status=communication_pb2.DELIVERY_STATUS_DELIVERED
        )


@dataclass
class World:
    relay: Relay
    relay_runtime: PluginRuntime
    bystander: PluginRuntime
    vault: RecordingStore
    ids: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    async def sign_in(self, core: CoreProcess, username: str) -> str:
        """One session per user for the module (a second MFA sign-in would need the next TOTP step)."""
        if username not in self.tokens:
            self.tokens[username] = await _sign_in(core, username)
        return self.tokens[username]


async def _user(core: CoreProcess, username: str, roles: list[str]) -> str:
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=roles), timeout=10
        )
    return str(created.user.user_id)


async def _sign_in(core: CoreProcess, username: str) -> str:
    """An access token; enrols MFA first when the user's traits require it."""
    first = await login(core, username, PASSWORD)
    if first.step == auth_pb.LOGIN_STEP_COMPLETE:
        return str(first.tokens.access_token)
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),  # type: ignore[attr-defined]
    )
    return str(confirmed.tokens.access_token)  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("manifests")
    vault = RecordingStore()
    relay = Relay()
    calls = [{"plugin_id": "vault", "method": RETRIEVE_METHOD}]
    runtimes = [await started_plugin(core, write_manifest(tmp, "vault", provides=[RETRIEVE_METHOD]), [vault])]
    relay.runtime = await started_plugin(
        core,
        write_manifest(
            tmp, "relay", contracts=[COMMUNICATION], traits=["communication_plugin"], provides=[SEND], calls=calls
        ),
        [relay],
    )
    bystander = await started_plugin(core, write_manifest(tmp, "bystander", calls=calls), [RecordingStore()])
    runtimes += [relay.runtime, bystander]
    ids = {
        "pat": await _user(core, "pat", ["pii_handler"]),
        "phil": await _user(core, "phil", ["pii_handler", "phi_handler"]),
        "vic": await _user(core, "vic", ["viewer"]),
    }
    try:
        yield World(relay, relay.runtime, bystander, vault, ids)
    finally:
        for runtime in runtimes:
            await runtime.stop("test over")


def _send(message_id: str) -> communication_pb2.SendMessageRequest:
    return communication_pb2.SendMessageRequest(
        message=communication_pb2.CanonicalMessage(message_id=message_id, to_address="a@example.com", content="x")
    )


async def _user_sends(core: CoreProcess, token: str, message_id: str) -> communication_pb2.SendMessageResponse:
    """The user's typed call on the bootstrap port, routed to `relay`."""
    async with bootstrap_channel(core) as channel:
        reply: communication_pb2.SendMessageResponse = await communication_pb2_grpc.CommunicationPluginServiceStub(
            channel
        ).SendMessage(_send(message_id), metadata=(*bearer(token), *target_metadata("relay")), timeout=15)
    return reply


async def _as_plugin(runtime: PluginRuntime, token: str) -> grpc.aio.AioRpcError | None:
    """`runtime`'s plugin calls vault's RetrieveObject presenting `token`."""
    stub = storage_pb2_grpc.StoragePluginServiceStub(runtime.core_channel)
    try:
        await stub.RetrieveObject(
            storage_pb2.RetrieveObjectRequest(object_key="k"),
            metadata=target_metadata("vault", on_behalf_of=token),
            timeout=10,
        )
    except grpc.aio.AioRpcError as err:
        return err
    return None


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def _deny_rows(core: CoreProcess, actor: str, reason: str) -> list[Any]:
    return [r for r in audit_rows(core, actor=actor, reason=reason) if r.action == RETRIEVE]


async def test_c5_plugin_cannot_lend_its_rights_to_a_user_who_lacks_them(core: CoreProcess, world: World) -> None:
    pat = world.ids["pat"]
    token = await world.sign_in(core, "pat")
    reply = await _user_sends(core, token, "m-pat")
    assert reply.message_id == "m-pat"
    # relay got pat as the user and a token for relay alone ...
    assert world.relay.users[-1] == pat
    claims = _claims(world.relay.tokens[-1])
    assert (claims["aud"], claims["sub"], claims["exp"] - claims["iat"]) == ("plugin:relay", pat, 60)
    # ... and its call for pat (no handles_phi) was refused before the vault.
    assert world.relay.outcomes[-1] == ("PERMISSION_DENIED", "DELEGATION_DENIED")
    assert world.vault.calls == []
    rows = _deny_rows(core, "plugin:relay", "DELEGATION_DENIED")
    assert len(rows) == 1
    assert (rows[0].decision, rows[0].rule_id, rows[0].outcome) == (
        "deny",
        "user-storage-operations",
        "PERMISSION_DENIED",
    )
    assert json.loads(rows[0].detail)["on_behalf_of"] == f"user:{pat}"
    assert [r.outcome for r in audit_rows(core, actor=f"user:{pat}") if r.action == f"/{SEND}"] == ["OK"]

    # The same refusal seen by the plugin: status, reason and the user's rule.
    err = await _as_plugin(world.relay_runtime, world.relay.tokens[-1])
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err)
    assert (info.reason, info.metadata["rule_id"]) == ("DELEGATION_DENIED", "user-storage-operations")
    assert len(_deny_rows(core, "plugin:relay", "DELEGATION_DENIED")) == 2
    # Through Invoke the same.
    invoke = gateway_pb2.InvokeRequest(target_plugin_id="vault", method=RETRIEVE_METHOD)
    invoke.payload.Pack(storage_pb2.RetrieveObjectRequest(object_key="k"))
    err = await expect_error(
        gateway_pb2_grpc.OperatorGatewayServiceStub(world.relay_runtime.core_channel).Invoke(
            invoke, metadata=(("x-vivified-delegation", world.relay.tokens[-1]),), timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(err).reason == "DELEGATION_DENIED"
    invoke_rows = [
        r
        for r in audit_rows(core, actor="plugin:relay", reason="DELEGATION_DENIED")
        if r.action == "/vivified.gateway.v1.OperatorGatewayService/Invoke"
    ]
    assert len(invoke_rows) == 1 and json.loads(invoke_rows[0].detail)["on_behalf_of"] == f"user:{pat}"

    # Acting on its own authority (no user) relay may call the vault: its
    # manifest allows it, so the refusal above was the user's rights.
    assert await _as_plugin(world.relay_runtime, "") is None
    assert world.vault.metadata[-1].get("x-vivified-delegation") is None


async def test_user_with_the_trait_goes_through_and_is_named_to_the_target(core: CoreProcess, world: World) -> None:
    phil = world.ids["phil"]
    token = await world.sign_in(core, "phil")
    request = gateway_pb2.InvokeRequest(target_plugin_id="relay", method=SEND)
    request.payload.Pack(_send("m-phil"))
    async with bootstrap_channel(core) as channel:
        await gateway_pb2_grpc.OperatorGatewayServiceStub(channel).Invoke(request, metadata=bearer(token), timeout=15)
    assert world.relay.outcomes[-1] == ("OK", "")
    seen = world.vault.metadata[-1]
    assert seen["x-vivified-on-behalf-of"] == phil and seen["x-vivified-caller"] == "relay"
    vault_claims = _claims(seen["x-vivified-delegation"])
    assert (vault_claims["aud"], vault_claims["sub"]) == ("plugin:vault", phil)
    row = [r for r in audit_rows(core, actor="plugin:relay") if r.action == RETRIEVE][-1]
    detail = json.loads(row.detail)
    assert (row.outcome, detail["on_behalf_of"], detail["user_rule"]) == (
        "OK",
        f"user:{phil}",
        "user-storage-operations",
    )
    assert detail["lane_rule"] == f"manifest:relay:calls:vault:{RETRIEVE_METHOD}"


async def test_token_refused_from_another_plugin_forged_or_after_logout(core: CoreProcess, world: World) -> None:
    token = await world.sign_in(core, "phil")
    await _user_sends(core, token, "m-replay")
    assert world.relay.outcomes[-1] == ("OK", "")
    relay_token = world.relay.tokens[-1]
    calls_before = len(world.vault.calls)

    # Replayed by another plugin whose own manifest allows the call.
    err = await _as_plugin(world.bystander, relay_token)
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "DELEGATION_INVALID"
    replayed = _deny_rows(core, "plugin:bystander", "DELEGATION_INVALID")
    assert [(r.decision, r.rule_id) for r in replayed] == [("deny", "delegation-token")]
    # The vault's own token is not relay's either.
    err = await _as_plugin(world.relay_runtime, world.vault.metadata[-1]["x-vivified-delegation"])
    assert err is not None and error_info(err).reason == "DELEGATION_INVALID"
    # pat's token with phil's traits written in: the signature no longer holds.
    pat_token = world.relay.tokens[0]
    header, _, signature = pat_token.split(".")
    raised = _claims(pat_token) | {"traits": ["handles_phi", "handles_pii"]}
    payload = base64.urlsafe_b64encode(json.dumps(raised).encode()).decode().rstrip("=")
    err = await _as_plugin(world.relay_runtime, f"{header}.{payload}.{signature}")
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "DELEGATION_INVALID"
    assert len(_deny_rows(core, "plugin:relay", "DELEGATION_INVALID")) == 2

    # phil signs out: the token dies with the session.
    await auth_call(core, "Logout", auth_pb.LogoutRequest(), token)
    err = await _as_plugin(world.relay_runtime, relay_token)
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err).reason == "DELEGATION_REVOKED"
    assert len(_deny_rows(core, "plugin:relay", "DELEGATION_REVOKED")) == 1
    assert len(world.vault.calls) == calls_before


async def test_user_without_the_operation_right_never_reaches_the_plugin(core: CoreProcess, world: World) -> None:
    vic = world.ids["vic"]
    served = len(world.relay.tokens)
    token = await world.sign_in(core, "vic")
    err = await expect_error(_user_sends(core, token, "m-vic"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err)
    assert (info.reason, info.metadata["rule_id"]) == ("POLICY_DENIED", "user-communication-operations")
    assert [(r.decision, r.reason) for r in audit_rows(core, actor=f"user:{vic}") if r.action == f"/{SEND}"] == [
        ("deny", "POLICY_DENIED")
    ]
    assert len(world.relay.tokens) == served
