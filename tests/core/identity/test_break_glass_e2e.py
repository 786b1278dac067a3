"""C8, break-glass, through a real core: a user with the `break_glass` role
gets emergency access (handles_phi/handles_pii) only on calls that carry a
reason, only for the session's time box; the activation is one critical
audit record and a SecurityAlert; everyone else, and a call without a valid
reason, is refused with PERMISSION_DENIED, a reason, rule `break-glass` and
one audit record. (The time box itself, with an injected clock: test_break_glass.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.events import SECURITY_ALERT, Inbox, event_plugin
from support.lane import RETRIEVE_METHOD, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess
from support.users import auth_call, auth_pb, bearer, code_at, expect_error, login, users_pb
from support.waiting import until
from vivified.events.v1.canonical_pb2 import SEVERITY_CRITICAL, SecurityAlert
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.sdk import PluginRuntime, target_metadata
from vivified.storage.v1 import storage_pb2, storage_pb2_grpc

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

PASSWORD = "CANARY-glass-pw-31d7a9c0"
RETRIEVE = f"/{RETRIEVE_METHOD}"
HEADER = "x-vivified-break-glass"
REASON = "ER bay 3: unconscious patient, need allergy history now"


@dataclass
class World:
    vault: RecordingStore
    alerts: Inbox
    ids: dict[str, str]
    tokens: dict[str, str]


async def _sign_in(core: CoreProcess, username: str) -> str:
    first = await login(core, username, PASSWORD)
    if first.step == auth_pb.LOGIN_STEP_COMPLETE:
        return str(first.tokens.access_token)
    assert first.step == auth_pb.LOGIN_STEP_MFA_ENROLLMENT_REQUIRED
    enrol = await auth_call(core, "EnrollMfa", auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token))
    confirmed = await auth_call(
        core,
        "ConfirmMfa",
        auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code_at(enrol.secret, time.time())),  # type: ignore[attr-defined]
    )
    return str(confirmed.tokens.access_token)  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("glass")
    vault = RecordingStore()
    runtimes: list[PluginRuntime] = [
        await started_plugin(core, write_manifest(tmp, "glass-vault", provides=[RETRIEVE_METHOD]), [vault])
    ]
    watcher = await event_plugin(core, tmp, "glass-alerts", subscribes=[SECURITY_ALERT])
    runtimes.append(watcher)
    alerts = Inbox()
    await watcher.subscribe("alerts", {SecurityAlert: alerts}).opened()
    ids: dict[str, str] = {}
    async with operator_channel(core) as channel:
        for username, roles in (("erin", ["break_glass"]), ("vic", ["viewer"])):
            created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
                users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=roles), timeout=10
            )
            ids[username] = created.user.user_id
    tokens = {name: await _sign_in(core, name) for name in ids}
    try:
        yield World(vault, alerts, ids, tokens)
    finally:
        for runtime in runtimes:
            await runtime.stop("test over")


async def _retrieve(core: CoreProcess, credential: tuple[tuple[str, str], ...], reason: str | None) -> None:
    extra = ((HEADER, reason),) if reason is not None else ()
    async with bootstrap_channel(core) as channel:
        await storage_pb2_grpc.StoragePluginServiceStub(channel).RetrieveObject(
            storage_pb2.RetrieveObjectRequest(object_key="chart-17"),
            metadata=(*credential, *target_metadata("glass-vault"), *extra),
            timeout=15,
        )


def _calls(core: CoreProcess, user_id: str) -> list[object]:
    return audit_rows(core, action=RETRIEVE, actor=f"user:{user_id}")


def _activations(core: CoreProcess) -> list[object]:
    return audit_rows(core, action="identity.break_glass.activate")


async def _refused(core: CoreProcess, user_id: str, call: object, reason: str, rule: str) -> None:
    before = len(_calls(core, user_id))
    err = await expect_error(call)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err)
    assert (info.reason, info.metadata["rule_id"]) == (reason, rule)
    rows = _calls(core, user_id)
    assert len(rows) == before + 1
    assert (rows[-1].decision, rows[-1].reason, rows[-1].rule_id, rows[-1].outcome) == (
        "deny",
        reason,
        rule,
        "PERMISSION_DENIED",
    )


async def test_c8_break_glass_needs_a_reason_is_audited_critical_and_alerted(core: CoreProcess, world: World) -> None:
    erin, token = world.ids["erin"], bearer(world.tokens["erin"])

    # Without breaking glass the role gives no PHI access.
    await _refused(core, erin, _retrieve(core, token, None), "POLICY_DENIED", "user-storage-operations")
    # No reason, or no real one: refused, nothing activated.
    for weak in ("", "   ", "urgent", "x" * 501):
        await _refused(core, erin, _retrieve(core, token, weak), "BREAK_GLASS_REASON_REQUIRED", "break-glass")
    assert _activations(core) == [] and world.vault.calls == []

    await _retrieve(core, token, REASON)
    assert world.vault.calls == ["RetrieveObject"]
    [activation] = _activations(core)
    detail = json.loads(activation.detail)
    assert (activation.actor, activation.decision, activation.rule_id) == (f"user:{erin}", "allow", "break-glass")
    assert (detail["severity"], detail["reason"], detail["user_id"]) == ("critical", REASON, erin)
    assert detail["traits"] == "audit_required,handles_phi,handles_pii"
    [allowed] = [r for r in _calls(core, erin) if r.outcome == "OK"]
    assert json.loads(allowed.detail)["break_glass"] == detail["activation_id"]

    await until(lambda: any(p.kind == "break_glass_activated" for p, _ in world.alerts.received), 10, "the alert")
    [alert] = [p for p, _ in world.alerts.received if p.kind == "break_glass_activated"]
    assert alert.severity == SEVERITY_CRITICAL and alert.subject == f"user/{erin}"
    assert (
        alert.details["activation_id"] == detail["activation_id"]
        and alert.details["expires_at"] == detail["expires_at"]
    )
    assert REASON not in str(alert)  # the reason stays in the audit log

    # Within the window: the next call with a reason is elevated under the same activation, not a new one.
    await _retrieve(core, token, "follow-up: medication list for the same patient")
    assert world.vault.calls == ["RetrieveObject"] * 2 and len(_activations(core)) == 1
    assert json.loads(_calls(core, erin)[-1].detail)["break_glass"] == detail["activation_id"]
    # A call without the header has the user's own traits only.
    await _refused(core, erin, _retrieve(core, token, None), "POLICY_DENIED", "user-storage-operations")


async def test_c8_only_a_signed_in_break_glass_user_may_break_glass(core: CoreProcess, world: World) -> None:
    vic = world.ids["vic"]
    await _refused(
        core, vic, _retrieve(core, bearer(world.tokens["vic"]), REASON), "BREAK_GLASS_NOT_ALLOWED", "break-glass"
    )
    # An API key has no session and no second factor: refused even for erin.
    async with bootstrap_channel(core) as channel:
        key = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            keys_pb.CreateApiKeyRequest(name="bg", scopes=["viewer"]), metadata=bearer(world.tokens["erin"]), timeout=10
        )
    await _refused(
        core,
        world.ids["erin"],
        _retrieve(core, (("x-api-key", key.api_key),), REASON),
        "BREAK_GLASS_NOT_ALLOWED",
        "break-glass",
    )
    assert all(json.loads(r.detail)["user_id"] == world.ids["erin"] for r in _activations(core))
