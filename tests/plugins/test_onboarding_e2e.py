"""The onboarding workflow end to end, across all three lanes, as real
processes: a core, `user-management`, `email-gateway` (run by
`vivified.sdk.testing.LocalCore`) and aiosmtpd.

An administrator runs `vivified users create` → the core publishes
UserCreated → the directory creates the profile (`invited`) → the gateway
receives UserCreated with the address and the activation token → calls
`user-management.GetProfile` through the operator lane → sends the mail over
SMTP through the egress tunnel → publishes EmailSent naming the user → the
directory marks the person `welcomed`; activation → UserUpdated → `active`.
One trace id runs through the audit record of every step. Failure paths:
the SMTP server down, the directory down, the gateway disabled."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from support.clients import audit_rows, operator_channel
from support.email_gateway import SENDER, SmtpServer
from support.onboarding import (
    ACTIVATION_URL,
    CONNECT,
    CREATE_USER,
    DIRECTORY,
    GATEWAY,
    GET_PROFILE,
    Onboarding,
    onboarding_world,
    verify_audit,
)
from support.processes import run_cli
from support.users import auth_call, auth_pb
from support.waiting import until
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.directory.v1 import directory_pb2 as dir_pb
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailQueued, EmailSent, UserCreated

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]
PUBLISH = "event.publish"
PLUGIN_PUBLISH = "/vivified.events.v1.EventBusService/Publish"


def parsed(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body(message: email.message.EmailMessage) -> str:
    content = message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def detail(row: Any) -> dict[str, str]:
    return json.loads(row.detail) if row.detail else {}  # type: ignore[no-any-return]


@pytest.fixture
def smtp(tmp_path: pathlib.Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def world(tmp_path: pathlib.Path, smtp: SmtpServer) -> AsyncIterator[Onboarding]:
    async with onboarding_world(tmp_path, smtp, max_attempts=3) as running:
        yield running


async def test_onboarding_follows_one_trace_from_users_create_to_active(world: Onboarding) -> None:
    started = time.monotonic()
    user_id, token = world.create_user("ada", "Ada L")
    sent = await until(lambda: world.events_of(EmailSent, user_id), 30, "EmailSent for Ada's welcome mail")
    welcomed = await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_WELCOMED), 30, "welcomed")
    elapsed = time.monotonic() - started

    # The mail as the SMTP server received it: over STARTTLS with AUTH, personalised, with the link.
    [received] = world.mails(user_id)
    assert received.tls and received.rcpt_tos == ["ada@example.com"] and received.mail_from == SENDER
    mail = parsed(received.data)
    assert (mail["From"], mail["To"], mail["Subject"]) == (SENDER, "ada@example.com", "Welcome to Vivified, Ada L")
    assert mail["Message-ID"] and mail["Date"] and mail["X-Vivified-Email-Id"] == f"welcome-{user_id}"
    text = body(mail)
    assert text.startswith("Hello Ada L,\n") and "Your account 'ada' has been created." in text
    assert ACTIVATION_URL.replace("{token}", token) in text.splitlines()
    # The events: queued, then sent naming the user, with the server's message id.
    assert world.events_of(EmailQueued, user_id)[0].template == "welcome"
    assert sent[0].user_id == user_id and sent[0].provider_message_id == str(mail["Message-ID"]).strip()
    assert world.events_of(EmailFailed, user_id) == []
    assert welcomed.reason == ""

    # One trace: every step of the workflow has its audit record under the CreateUser call's trace id.
    trace = world.trace_of_creation(user_id)
    rows = audit_rows(world.core, trace_id=trace)
    steps = [(r.actor, r.action) for r in rows]
    (created,) = [r for r in rows if r.action == CREATE_USER]
    assert created.outcome == "OK" and created.resource == f"user/{user_id}"
    core_publish = [r for r in rows if (r.actor, r.action) == ("core:core", PUBLISH)]
    assert [r.resource for r in core_publish] == ["event/vivified.events.v1.UserCreated"]
    user_created_id = detail(core_publish[0])["event_id"]
    # The directory lacks handles_confidential: its delivery had the token cleared (audited as a redaction).
    (to_directory,) = [
        r for r in rows if r.actor == f"plugin:{DIRECTORY}" and detail(r).get("event_id") == user_created_id
    ]
    assert to_directory.action == "event.redact" and detail(to_directory)["fields"] == "activation_token"
    (to_gateway,) = [r for r in rows if r.actor == f"plugin:{GATEWAY}" and r.action == "event.deliver"]
    assert detail(to_gateway)["event_id"] == user_created_id and detail(to_gateway)["attempt"] == "1"
    # The operator-lane call, allowed, answered.
    (lookup,) = [r for r in rows if r.action == GET_PROFILE]
    assert (lookup.actor, lookup.decision, lookup.outcome) == (f"plugin:{GATEWAY}", "allow", "OK")
    # The SMTP tunnel through the egress lane.
    (tunnel,) = [r for r in rows if r.action == CONNECT]
    assert (tunnel.actor, tunnel.outcome, detail(tunnel)["port"]) == (f"plugin:{GATEWAY}", "OK", str(world.smtp.port))
    # The gateway's publishes (one record each, of its Publish call), and EmailSent's delivery to the directory.
    gateway_publish = [r.resource for r in rows if (r.actor, r.action) == (f"plugin:{GATEWAY}", PLUGIN_PUBLISH)]
    assert gateway_publish == ["event/vivified.events.v1.EmailQueued", "event/vivified.events.v1.EmailSent"]
    sent_id = next(detail(r)["event_id"] for r in rows if r.resource == "event/vivified.events.v1.EmailSent")
    assert sent_id == f"welcome-{user_id}:sent"
    (to_directory_sent,) = [
        r for r in rows if r.actor == f"plugin:{DIRECTORY}" and detail(r).get("event_id") == sent_id
    ]
    assert to_directory_sent.action == "event.deliver"
    # In the order the workflow ran (the CreateUser call's own record is committed as it returns).
    seqs = (
        [r.seq for r in (core_publish[0], to_gateway, lookup)]
        + [next(r.seq for r in rows if r.resource == f"event/vivified.events.v1.{kind}") for kind in ("EmailQueued",)]
        + [
            tunnel.seq,
            next(r.seq for r in rows if r.resource == "event/vivified.events.v1.EmailSent"),
            to_directory_sent.seq,
        ]
    )
    assert seqs == sorted(seqs), steps

    # The operator's view of the same: `vivified audit query --trace` through the running core.
    queried = run_cli(world.core, "audit", "query", "--trace", trace, "--limit", "200", "--json")
    assert queried.returncode == 0, queried.stderr
    listed = json.loads(queried.stdout)["records"]
    assert sorted(int(r["seq"]) for r in listed) == [r.seq for r in rows]
    assert {r["trace_id"] for r in listed} == {trace}
    bad = run_cli(world.core, "audit", "query", "--trace", "not-a-trace")
    assert bad.returncode != 0 and "trace_id must be 32 lowercase hex digits" in bad.stdout + bad.stderr

    # Ada activates her account → the core's UserUpdated → active.
    await auth_call(
        world.core,
        "ActivateAccount",
        auth_pb.ActivateAccountRequest(activation_token=token, new_password="CANARY-ada-pw-31f0c2"),
    )
    await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_ACTIVE), 30, "active")
    (activation,) = audit_rows(world.core, action="/vivified.identity.v1.AuthService/ActivateAccount")
    activation_rows = audit_rows(world.core, trace_id=activation.trace_id)
    updated = [r for r in activation_rows if (r.actor, r.action) == ("core:core", PUBLISH)]
    assert [r.resource for r in updated] == ["event/vivified.events.v1.UserUpdated"]
    assert any(
        r.actor == f"plugin:{DIRECTORY}" and detail(r).get("event_id") == detail(updated[0])["event_id"]
        for r in activation_rows
    )
    # Nothing was sent twice, and the activation token never reached the audit log.
    assert len(world.mails(user_id)) == 1
    assert token not in json.dumps([str(r.detail) for r in audit_rows(world.core)])
    print(f"onboarding: users create -> mail received and welcomed in {elapsed:.2f}s")

    await world.stop(GATEWAY)
    await world.stop(DIRECTORY)
    assert await world.local.stop() == 0
    verified = verify_audit(world.core)
    assert verified.returncode == 0 and "audit log OK" in verified.stdout, verified.stdout + verified.stderr


async def test_smtp_down_retries_then_dead_letter_email_failed_and_onboarding_failed(world: Onboarding) -> None:
    world.smtp.stop()
    try:
        user_id, _ = world.create_user("grace", "Grace H")
        failed = await until(lambda: world.events_of(EmailFailed, user_id), 30, "EmailFailed after the retries")
        state = await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_FAILED), 30, "onboarding failed")

        async def dead_letters() -> list[Any]:
            async with operator_channel(world.core) as channel:
                stub = event_admin_pb2_grpc.EventAdminServiceStub(channel)
                name = (await world.subscription(GATEWAY)).subscription
                letters = await stub.ListDeadLetters(
                    event_admin_pb2.ListDeadLettersRequest(subscription=name, limit=100), timeout=5
                )
            found = []
            for letter in letters.dead_letters:
                payload = UserCreated()
                if letter.event.payload.Unpack(payload) and payload.user_id == user_id:
                    found.append(letter)
            return found

        [letter] = await until(dead_letters, 30, "UserCreated in the gateway's dead letters")
    finally:
        world.smtp.start()
    assert letter.attempts == world.max_attempts
    assert failed[0].user_id == user_id and failed[0].error_code in ("EGRESS_UPSTREAM_FAILED", "CONNECTION_FAILED")
    assert state.reason == failed[0].error_code
    # One tunnel per attempt, each refused by the dead server and audited, all under the creation's trace.
    trace = world.trace_of_creation(user_id)
    tunnels = [r for r in audit_rows(world.core, action=CONNECT) if r.trace_id == trace]
    assert [r.outcome for r in tunnels] == ["UNAVAILABLE"] * world.max_attempts
    assert [
        r.resource for r in audit_rows(world.core, trace_id=trace, actor=f"plugin:{GATEWAY}", action=PLUGIN_PUBLISH)
    ] == ["event/vivified.events.v1.EmailQueued", "event/vivified.events.v1.EmailFailed"]
    assert world.mails(user_id) == []


@pytest_asyncio.fixture
async def patient_world(tmp_path: pathlib.Path, smtp: SmtpServer) -> AsyncIterator[Onboarding]:
    """Six attempts with 500 ms doubling backoff: about 15 s of redeliveries."""
    async with onboarding_world(tmp_path, smtp, max_attempts=6, retry_backoff_ms="500") as running:
        yield running


async def test_directory_crashed_the_lookup_is_unavailable_promptly_and_the_mail_goes_once_it_is_back(
    patient_world: Onboarding,
) -> None:
    world = patient_world
    await world.crash(DIRECTORY)
    user_id, token = world.create_user("alan", "Alan T")
    trace = world.trace_of_creation(user_id)

    def refused_lookups() -> list[Any]:
        return [r for r in audit_rows(world.core, action=GET_PROFILE, trace_id=trace) if r.outcome == "UNAVAILABLE"]

    [first, *_] = await until(refused_lookups, 20, "the gateway's GetProfile refused while the directory is down")
    (created,) = audit_rows(world.core, action=CREATE_USER, resource=f"user/{user_id}")
    # Promptly: the core refuses at once rather than letting the call wait out its 5 s deadline.
    delay = dt.datetime.fromisoformat(str(first.time)) - dt.datetime.fromisoformat(str(created.time))
    assert delay < dt.timedelta(seconds=3), delay
    # Dialled and refused (TARGET_ERROR), or already known unhealthy (TARGET_UNAVAILABLE): UNAVAILABLE either way.
    assert first.actor == f"plugin:{GATEWAY}" and first.reason in ("TARGET_ERROR", "TARGET_UNAVAILABLE")
    assert world.mails(user_id) == [] and world.events_of(EmailQueued, user_id) == []

    await world.start(DIRECTORY)
    await until(lambda: world.events_of(EmailSent, user_id), 40, "EmailSent once the directory is back")
    await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_WELCOMED), 30, "welcomed")
    [received] = world.mails(user_id)
    text = body(parsed(received.data))
    assert text.startswith("Hello Alan T,\n") and ACTIVATION_URL.replace("{token}", token) in text.splitlines()
    answered = [r for r in audit_rows(world.core, action=GET_PROFILE, trace_id=trace) if r.outcome == "OK"]
    assert len(answered) == 1
    # The redelivery that succeeded is audited as a later attempt of the same event, same trace.
    deliveries = audit_rows(world.core, action="event.deliver", actor=f"plugin:{GATEWAY}", trace_id=trace)
    assert len(deliveries) >= 2 and int(detail(deliveries[-1])["attempt"]) > 1


async def test_disabled_gateway_sends_nothing_events_wait_and_flow_when_enabled(world: Onboarding) -> None:
    disabled = run_cli(world.core, "plugins", "disable", GATEWAY, "--reason", "onboarding test")
    assert disabled.returncode == 0, disabled.stderr
    user_id, token = world.create_user("hedy", "Hedy L")
    await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_INVITED), 30, "the profile, invited")
    # While the gateway waits, the department is filled in: the mail, sent later, shows GetProfile's answer.
    assert world.watcher is not None
    await world.watcher.call(
        DIRECTORY,
        dir_pb.UpdateProfileRequest(
            user_id=user_id,
            profile=dir_pb.Profile(department="Research"),
            update_mask={"paths": ["department"]},
        ),
        timeout=10,
    )
    await asyncio.sleep(3)
    assert world.mails(user_id) == [] and world.events_of(EmailQueued, user_id) == []
    assert (await world.onboarding(user_id)).state == dir_pb.ONBOARDING_STATE_INVITED  # type: ignore[union-attr]
    # The event waits in the gateway's subscription; the refused reopenings are audited as denials.
    refused = [
        r for r in audit_rows(world.core, actor=f"plugin:{GATEWAY}", decision="deny") if r.reason == "PLUGIN_DISABLED"
    ]
    assert refused

    enabled = run_cli(world.core, "plugins", "enable", GATEWAY)
    assert enabled.returncode == 0, enabled.stderr
    await until(lambda: world.events_of(EmailSent, user_id), 30, "EmailSent once enabled")
    await until(lambda: world.state_is(user_id, dir_pb.ONBOARDING_STATE_WELCOMED), 30, "welcomed")
    [received] = world.mails(user_id)
    text = body(parsed(received.data))
    assert text.startswith("Hello Hedy L,\n") and "You join Research." in text
    assert ACTIVATION_URL.replace("{token}", token) in text.splitlines()
