"""The people directory as real processes: a real core and `python -m
vivified.plugins.user_management` as its own process with its own data dir
(both run by `vivified.sdk.testing.LocalCore`), and test plugins beside it. An administrator creates a person with the CLI →
the core publishes UserCreated → the directory creates the profile
(`invited`), readable through the operator lane by a plugin that declares
the call; a subscriber without handles_pii/handles_confidential gets the
email, name and activation token cleared (audited), one with both traits
gets them; EmailSent naming the user → `welcomed`; ActivateAccount → the
core's UserUpdated → `active`. A caller that does not declare the call is
refused (status, reason, one audit record); the profile survives a restart."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from support.clients import audit_rows, error_info
from support.events import Inbox
from support.lane import RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, clean_env, core_view, run_cli, spawn
from support.users import auth_call, auth_pb
from support.waiting import until
from vivified.directory.v1 import directory_pb2 as dir_pb
from vivified.directory.v1 import directory_pb2_grpc as dir_grpc
from vivified.events.v1.canonical_pb2 import EmailSent, UserCreated
from vivified.sdk import PermissionDeniedError, PluginRuntime, target_metadata
from vivified.sdk.testing import LocalCore

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

MANIFEST = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "user_management" / "manifest.yaml"
DIRECTORY = "vivified.directory.v1.DirectoryService"
PLUGIN = "user-management"
PASSWORD = "CANARY-ada-first-pw-9c8b7a"
COMMAND = (sys.executable, "-m", "vivified.plugins.user_management")


@dataclass
class Rig:
    local: LocalCore
    core: CoreProcess
    reader: PluginRuntime
    welcomer: PluginRuntime
    stranger: PluginRuntime
    reader_inbox: Inbox
    welcomer_inbox: Inbox


@pytest_asyncio.fixture
async def rig(tmp_path: pathlib.Path) -> AsyncIterator[Rig]:
    """The directory as its own process under a LocalCore, and three plugins beside it."""
    async with LocalCore(
        MANIFEST, None, tmp_path / "local", command=COMMAND, plugin_env={"PYTHONPATH": os.pathsep.join(sys.path)}
    ) as local:
        async with _beside(local, tmp_path) as running:
            yield running


@contextlib.asynccontextmanager
async def _beside(local: LocalCore, tmp_path: pathlib.Path) -> AsyncIterator[Rig]:
    core = core_view(local)
    calls = [{"plugin_id": PLUGIN, "method": f"{DIRECTORY}/{m}"} for m in ("GetProfile", "GetOnboardingStatus")]
    # No handles_pii, no handles_confidential: sees people with their PII and token cleared.
    reader = await started_plugin(
        core,
        write_manifest(tmp_path, "people-reader", calls=calls, subscribes=["vivified.events.v1.UserCreated"]),
        [RecordingStore()],
    )
    # Both traits (as the email gateway holds them), and it announces welcome mails.
    welcomer = await started_plugin(
        core,
        write_manifest(
            tmp_path,
            "welcomer",
            subscribes=["vivified.events.v1.UserCreated"],
            publishes=["vivified.events.v1.EmailSent"],
            traits=["storage_plugin", "handles_pii", "audit_required", "handles_confidential"],
            compliance={
                "data_classifications": ["CLASSIFICATION_PII", "CLASSIFICATION_CONFIDENTIAL"],
                "retention_days": 30,
            },
        ),
        [RecordingStore()],
    )
    stranger = await started_plugin(core, write_manifest(tmp_path, "stranger"), [RecordingStore()])
    reader_inbox, welcomer_inbox = Inbox(), Inbox()
    await reader.subscribe("people", {UserCreated: reader_inbox}).opened()
    await welcomer.subscribe("people", {UserCreated: welcomer_inbox}).opened()
    running = Rig(local, core, reader, welcomer, stranger, reader_inbox, welcomer_inbox)
    try:
        yield running
    finally:
        for runtime in (reader, welcomer, stranger):
            await runtime.stop()


def _create(core: CoreProcess, username: str) -> dict[str, object]:
    result = run_cli(
        core,
        "users",
        "create",
        "--username",
        username,
        "--email",
        f"{username}@example.com",
        "--display-name",
        f"{username.title()} L",
        "--role",
        "viewer",
        "--json",
        "--print-activation-token",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


async def _profile(runtime: PluginRuntime, user_id: str) -> dir_pb.Profile:
    reply = await runtime.call(PLUGIN, dir_pb.GetProfileRequest(user_id=user_id), timeout=10)
    return reply.profile  # type: ignore[attr-defined, no-any-return]


async def _state(runtime: PluginRuntime, user_id: str) -> int:
    try:
        reply = await runtime.call(PLUGIN, dir_pb.GetOnboardingStatusRequest(user_id=user_id), timeout=10)
    except Exception:  # noqa: BLE001 - NOT_FOUND until the directory has handled UserCreated
        return dir_pb.ONBOARDING_STATE_UNSPECIFIED
    return reply.state  # type: ignore[attr-defined, no-any-return]


async def test_onboarding_moves_the_profile_from_invited_to_welcomed_to_active(rig: Rig) -> None:
    created = _create(rig.core, "ada")
    user_id, token = str(created["user"]["user_id"]), str(created["activation_token"])  # type: ignore[index]

    await until(lambda: _state(rig.reader, user_id), 30, "the profile to appear")
    profile = await _profile(rig.reader, user_id)
    assert (profile.username, profile.onboarding_state) == ("ada", dir_pb.ONBOARDING_STATE_INVITED)
    # The reader lacks handles_pii: the operator lane cleared the PII fields of the answer.
    assert (profile.email, profile.display_name) == ("", "")
    row = [r for r in audit_rows(rig.core, actor="plugin:people-reader") if r.action == f"/{DIRECTORY}/GetProfile"][-1]
    assert row.outcome == "OK" and "display_name" in json.loads(row.detail)["redacted"]

    # Deliveries of the core's UserCreated: redacted for the reader, whole for the welcomer.
    await until(lambda: rig.reader_inbox.received and rig.welcomer_inbox.received, 30, "UserCreated deliveries")
    plain, plain_event = rig.reader_inbox.received[-1]
    full, full_event = rig.welcomer_inbox.received[-1]
    assert plain_event.event.source_plugin_id == full_event.event.source_plugin_id == "core"
    assert isinstance(plain, UserCreated) and isinstance(full, UserCreated)
    assert plain.user_id == full.user_id == user_id and plain.invited
    assert (plain.email, plain.display_name, plain.activation_token) == ("", "", "")
    assert set(plain_event.redacted_fields) == {"email", "display_name", "activation_token"}
    assert (full.email, full.display_name, full.activation_token) == ("ada@example.com", "Ada L", token)
    assert full_event.redacted_fields == ()
    event_id = plain_event.event.event_id
    redactions = [
        r
        for r in audit_rows(rig.core, action="event.redact", actor="plugin:people-reader")
        if json.loads(r.detail)["event_id"] == event_id
    ]
    deliveries = [
        r
        for r in audit_rows(rig.core, action="event.deliver", actor="plugin:welcomer")
        if json.loads(r.detail)["event_id"] == event_id
    ]
    assert len(redactions) == 1 and len(deliveries) == 1
    assert token not in "".join(str(r.detail) for r in audit_rows(rig.core))
    # The core's publish is one audit record under the CreateUser call's trace.
    published = [
        r
        for r in audit_rows(rig.core, action="event.publish", actor="core:core")
        if json.loads(r.detail)["event_id"] == event_id
    ]
    (create_call,) = audit_rows(
        rig.core, action="/vivified.identity.v1.UserAdminService/CreateUser", resource=f"user/{user_id}"
    )
    assert len(published) == 1 and published[0].trace_id == create_call.trace_id

    # The welcome mail went out (as the email gateway announces it) → welcomed.
    await rig.welcomer.publish(EmailSent(email_id="e-1", recipient="ada@example.com", user_id=user_id))
    await until(lambda: _state_is(rig.reader, user_id, dir_pb.ONBOARDING_STATE_WELCOMED), 30, "welcomed")

    # Ada activates her account → the core's UserUpdated → active.
    await auth_call(
        rig.core, "ActivateAccount", auth_pb.ActivateAccountRequest(activation_token=token, new_password=PASSWORD)
    )
    await until(lambda: _state_is(rig.reader, user_id, dir_pb.ONBOARDING_STATE_ACTIVE), 30, "active")

    # The profile is durable: a restarted directory (same data dir) still has it.
    await rig.local.plugin.restart()
    assert (await _profile(rig.reader, user_id)).onboarding_state == dir_pb.ONBOARDING_STATE_ACTIVE


async def _state_is(runtime: PluginRuntime, user_id: str, state: int) -> bool:
    return await _state(runtime, user_id) == state


async def test_caller_that_does_not_declare_the_call_is_refused(rig: Rig) -> None:
    user_id = str(_create(rig.core, "bob")["user"]["user_id"])  # type: ignore[index]
    await until(lambda: _state(rig.reader, user_id), 30, "the profile to appear")

    def stranger_calls() -> list[object]:
        return [r for r in audit_rows(rig.core, actor="plugin:stranger") if r.action == f"/{DIRECTORY}/GetProfile"]

    before = len(stranger_calls())
    with pytest.raises(PermissionDeniedError) as denied:
        await rig.stranger.call(PLUGIN, dir_pb.GetProfileRequest(user_id=user_id), timeout=10)
    assert denied.value.reason == "POLICY_DENIED"
    # The reader declares GetProfile and GetOnboardingStatus, not UpdateProfile.
    stub = dir_grpc.DirectoryServiceStub(rig.reader.core_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.UpdateProfile(
            dir_pb.UpdateProfileRequest(user_id=user_id, profile=dir_pb.Profile(department="Sales")),
            metadata=target_metadata(PLUGIN),
            timeout=10,
        )
    assert raw.value.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(raw.value).reason == "POLICY_DENIED"
    rows = stranger_calls()[before:]
    assert [(r.decision, r.reason) for r in rows] == [("deny", "POLICY_DENIED")]  # type: ignore[attr-defined]
    denied_updates = [
        r for r in audit_rows(rig.core, actor="plugin:people-reader") if r.action == f"/{DIRECTORY}/UpdateProfile"
    ]
    assert [(r.decision, r.reason) for r in denied_updates] == [("deny", "POLICY_DENIED")]
    assert (await _profile(rig.reader, user_id)).department == ""  # nothing reached the directory


async def test_the_plugin_refuses_to_start_without_a_data_dir(core: CoreProcess, tmp_path: pathlib.Path) -> None:
    env = clean_env(
        VIVIFIED_MANIFEST=str(MANIFEST),
        VIVIFIED_JOIN_TOKEN="unused",
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"),
    )
    log = tmp_path / "no-data-dir.log"
    process = spawn([sys.executable, "-m", "vivified.plugins.user_management"], env, log)
    assert process.wait(30) == 1
    assert "VIVIFIED_DATA_DIR" in log.read_text()
