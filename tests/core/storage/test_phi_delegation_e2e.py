"""A PHI object read for a user, through a real core (catalogue C5 applied to
the object store): plugin `clinic` holds handles_phi and serves a user's call;
reading a PHI object with that user's delegation token needs the trait of the
plugin AND of the user. A user without it is refused (PERMISSION_DENIED,
OBJECT_TRAIT_REQUIRED) though the plugin alone may read the object; a user
with it reads it. Each read writes one audit record naming the object id and
the user, never the content or the object's name."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from support.clients import audit_rows, bootstrap_channel, operator_channel
from support.lane import COMMUNICATION, started_plugin, write_manifest
from support.processes import CoreProcess
from support.users import auth_call, auth_pb, bearer, code_at, login, users_pb
from vivified.communication.v1 import communication_pb2, communication_pb2_grpc
from vivified.core.storage import object_id
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.options.v1 import options_pb2
from vivified.sdk import PluginRuntime, VivifiedSDKError, delegation_of, target_metadata

from .conftest import PHI_COMPLIANCE

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

SEND = f"{COMMUNICATION}/SendMessage"
GET = "/vivified.storage.v1.ObjectStoreService/GetObject"
PASSWORD = "CANARY-phi-reader-pw-51d0"
CHART = b"PHI-CANARY-diagnosis-7f3e"
NAME = "charts/patient-0042"


@dataclass
class Clinic(communication_pb2_grpc.CommunicationPluginServiceServicer):
    """Reads the PHI chart for whoever its caller is, passing the user's
    delegation token on; remembers how each read went."""

    runtime: PluginRuntime | None = None
    outcomes: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def SendMessage(
        self, request: communication_pb2.SendMessageRequest, context: Any
    ) -> communication_pb2.SendMessageResponse:
        assert self.runtime is not None
        try:
            data = await self.runtime.storage.get(NAME, on_behalf_of=delegation_of(context), timeout=10)
            self.outcomes.append(("OK", "", data))
        except VivifiedSDKError as err:
            self.outcomes.append((err.code.name, err.reason, b""))
        return communication_pb2.SendMessageResponse(
            message_id=request.message.message_id, status=communication_pb2.DELIVERY_STATUS_DELIVERED
        )


@dataclass
class World:
    clinic: Clinic
    runtime: PluginRuntime
    users: dict[str, str]


async def _user(core: CoreProcess, username: str, roles: list[str]) -> str:
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=roles), timeout=10
        )
    return str(created.user.user_id)


async def _sign_in(core: CoreProcess, username: str) -> str:
    """An access token; enrols MFA first when the user's traits require it (handles_phi does)."""
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
    clinic = Clinic()
    manifest = write_manifest(
        tmp_path_factory.mktemp("manifests"),
        "clinic",
        contracts=[COMMUNICATION],
        traits=["communication_plugin", "handles_phi", "audit_required", "encryption_required"],
        compliance=PHI_COMPLIANCE,
        provides=[SEND],
    )
    clinic.runtime = await started_plugin(core, manifest, [clinic])
    users = {
        "pat": await _user(core, "pat", ["pii_handler"]),
        "phil": await _user(core, "phil", ["pii_handler", "phi_handler"]),
    }
    try:
        yield World(clinic, clinic.runtime, users)
    finally:
        await clinic.runtime.stop("test over")


async def _user_asks_clinic(core: CoreProcess, username: str, message_id: str) -> None:
    """`username` signs in and calls clinic through the core (bootstrap port, bearer token)."""
    token = await _sign_in(core, username)
    request = communication_pb2.SendMessageRequest(
        message=communication_pb2.CanonicalMessage(message_id=message_id, to_address="a@example.com", content="x")
    )
    async with bootstrap_channel(core) as channel:
        await communication_pb2_grpc.CommunicationPluginServiceStub(channel).SendMessage(
            request, metadata=(*bearer(token), *target_metadata("clinic")), timeout=15
        )


def _reads(core: CoreProcess) -> list[Any]:
    return [r for r in audit_rows(core, actor="plugin:clinic") if r.action == GET]


async def test_c5_a_phi_object_is_read_for_a_user_only_if_the_user_holds_handles_phi(
    core: CoreProcess, world: World
) -> None:
    meta = await world.runtime.storage.put(NAME, CHART, classification=options_pb2.CLASSIFICATION_PHI, timeout=10)
    oid = object_id("clinic", NAME)
    assert meta.object_id == oid
    # On its own authority the plugin may read it: what follows is the user's rights.
    assert await world.runtime.storage.get(NAME, timeout=10) == CHART
    own = _reads(core)
    assert len(own) == 1 and own[0].decision == "allow"
    assert "on_behalf_of" not in json.loads(own[0].detail)

    # pat (no handles_phi) asks: the core refuses clinic's read for pat.
    await _user_asks_clinic(core, "pat", "m-pat")
    assert world.clinic.outcomes[-1] == ("PERMISSION_DENIED", "OBJECT_TRAIT_REQUIRED", b"")
    refused = _reads(core)[1:]
    assert len(refused) == 1
    row = refused[0]
    detail = json.loads(row.detail)
    assert (row.decision, row.outcome, row.reason, row.rule_id) == (
        "deny",
        "PERMISSION_DENIED",
        "OBJECT_TRAIT_REQUIRED",
        "storage-access",
    )
    assert (row.resource, detail["object_id"], detail["on_behalf_of"]) == (
        f"object/clinic/{oid}",
        oid,
        f"user:{world.users['pat']}",
    )

    # phil (handles_phi) asks: the same read goes through.
    await _user_asks_clinic(core, "phil", "m-phil")
    assert world.clinic.outcomes[-1] == ("OK", "", CHART)
    allowed = _reads(core)[2:]
    assert len(allowed) == 1
    row = allowed[0]
    detail = json.loads(row.detail)
    assert (row.decision, row.outcome, row.resource) == ("allow", "OK", f"object/clinic/{oid}")
    assert (detail["object_id"], detail["classification"], detail["on_behalf_of"]) == (
        oid,
        "CLASSIFICATION_PHI",
        f"user:{world.users['phil']}",
    )

    # No record holds the content or the object's name.
    every = b"".join(str(tuple(r)).encode() for r in audit_rows(core))
    assert CHART not in every and NAME.encode() not in every
