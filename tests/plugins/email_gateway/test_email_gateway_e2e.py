"""The email gateway end to end: real core, the real plugin process (both run
by `vivified.sdk.testing.LocalCore`, whose tester plugin calls it and receives
its events), aiosmtpd on loopback with STARTTLS and AUTH, SMTP carried by the
egress tunnel."""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
import uuid
from typing import Any

import pytest

from support.clients import audit_rows, operator_channel
from support.email_gateway import GATEWAY, MAX_ATTEMPTS, PASSWORD, SENDER, USERNAME, GatewayWorld
from support.waiting import until
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.communication.v1 import communication_pb2 as pb
from vivified.core.storage import object_id
from vivified.events.v1.canonical_pb2 import EmailFailed, EmailQueued, EmailSent, MessageSendRequested, UserCreated
from vivified.plugins.email_gateway._plugin import archive_name

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]
CONNECT = "/vivified.egress.v1.EgressProxyService/Connect"


def parsed(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body(message: email.message.EmailMessage) -> str:
    """The text body, with the wire's CRLF line ends read as newlines."""
    content = message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def tunnels(world: GatewayWorld) -> list[Any]:
    return audit_rows(world.core, action=CONNECT, actor=f"plugin:{GATEWAY}")


async def send(
    world: GatewayWorld,
    message_id: str,
    to: str,
    subject: str = "Quarterly report",
    content: str = "The numbers are in.\n",
) -> pb.SendMessageResponse:
    reply = await world.caller.call(
        GATEWAY,
        pb.SendMessageRequest(
            message=pb.CanonicalMessage(
                message_id=message_id,
                from_address="ignored@vivified.test",
                to_address=to,
                subject=subject,
                content_type="text/plain",
                content=content,
            )
        ),
        timeout=30,
    )
    assert isinstance(reply, pb.SendMessageResponse)
    return reply


async def status(world: GatewayWorld, message_id: str) -> pb.GetMessageStatusResponse:
    reply = await world.caller.call(GATEWAY, pb.GetMessageStatusRequest(message_id=message_id), timeout=10)
    assert isinstance(reply, pb.GetMessageStatusResponse)
    return reply


async def test_send_message_through_the_operator_lane_delivers_a_mail(world: GatewayWorld) -> None:
    message_id = f"op-{uuid.uuid4().hex[:8]}"
    before = len(tunnels(world))
    reply = await send(world, message_id, "ada@example.com", "Quarterly report", "The numbers are in.\n")
    assert reply.status == pb.DELIVERY_STATUS_DELIVERED
    [received] = world.smtp.recorder.by_id(message_id)
    mail = parsed(received.data)
    assert (mail["From"], mail["To"], mail["Subject"]) == (SENDER, "ada@example.com", "Quarterly report")
    assert mail["Message-ID"] and mail["Date"]
    assert body(mail) == "The numbers are in.\n"
    assert received.rcpt_tos == ["ada@example.com"] and received.mail_from == SENDER
    # STARTTLS then AUTH, end to end between the plugin and the server.
    assert received.tls and received.login == USERNAME
    assert (await status(world, message_id)).status == pb.DELIVERY_STATUS_DELIVERED
    # A reused message id returns the earlier status and sends nothing.
    assert (await send(world, message_id, "ada@example.com")).status == pb.DELIVERY_STATUS_DELIVERED
    assert len(world.smtp.recorder.by_id(message_id)) == 1
    await until(lambda: world.observer.of(EmailSent, message_id), 15, "EmailSent")
    assert world.observer.of(EmailQueued, message_id)
    # The tunnel's one audit record: endpoint, address, bytes each way, duration, outcome.
    rows = tunnels(world)[before:]
    assert len(rows) == 1 and rows[0].outcome == "OK" and rows[0].decision == "allow"
    facts = json.loads(rows[0].detail)
    assert (facts["host"], facts["port"], facts["address"]) == ("127.0.0.1", str(world.smtp.port), "127.0.0.1")
    assert int(facts["bytes_sent"]) > len(received.data) and int(facts["bytes_received"]) > 500
    assert "duration_ms" in facts
    calls = audit_rows(world.core, action="/vivified.communication.v1.CommunicationPluginService/SendMessage")
    assert any(r.actor == "plugin:email-gateway-tester" and r.outcome == "OK" for r in calls)
    # Kept, as sent, in the core's encrypted object store: one PII put by the gateway, no plaintext at rest.
    [sent] = world.observer.of(EmailSent, message_id)
    oid = object_id(GATEWAY, archive_name(sent.email_id))
    puts = await until(
        lambda: audit_rows(
            world.core, action="/vivified.storage.v1.ObjectStoreService/PutObject", resource=f"object/{GATEWAY}/{oid}"
        ),
        10,
        "the archive's PutObject",
    )
    assert len(puts) == 1 and puts[0].actor == f"plugin:{GATEWAY}" and puts[0].outcome == "OK"
    assert json.loads(puts[0].detail)["classification"] == "CLASSIFICATION_PII"
    kept = world.core.data_dir / "objects" / GATEWAY / oid
    assert (kept / "meta.json").exists()
    assert b"The numbers are in." not in b"".join(f.read_bytes() for f in kept.iterdir())


async def test_message_send_requested_yields_email_sent_and_the_mail(world: GatewayWorld) -> None:
    message_id = f"evt-{uuid.uuid4().hex[:8]}"
    await world.caller.publish(
        MessageSendRequested(
            message_id=message_id,
            recipient="grace@example.com",
            subject="Lab results",
            body="All clear.\n",
            template="plain",
        )
    )
    sent = await until(lambda: world.observer.of(EmailSent, message_id), 20, "EmailSent for the event")
    [received] = world.smtp.recorder.by_id(message_id)
    mail = parsed(received.data)
    assert (mail["To"], mail["Subject"], body(mail)) == ("grace@example.com", "Lab results", "All clear.\n")
    assert sent[0].provider_message_id == str(mail["Message-ID"]).strip()
    assert (await status(world, message_id)).status == pb.DELIVERY_STATUS_DELIVERED
    # UserCreated from a plugin, not the core: no welcome mail (it would carry an activation link).
    # Deliveries are handled in order, so once the next event's mail is out the UserCreated was handled.
    user_id = uuid.uuid4().hex[:8]
    await world.caller.publish(
        UserCreated(
            user_id=user_id,
            username="ada",
            email="ada@example.com",
            display_name="Ada L",
            activation_token="vat_forged",
        )
    )
    after = f"evt-{uuid.uuid4().hex[:8]}"
    await world.caller.publish(
        MessageSendRequested(message_id=after, recipient="grace@example.com", subject="s", body="b")
    )
    await until(lambda: world.observer.of(EmailSent, after), 20, "EmailSent for the event after UserCreated")
    assert (
        world.smtp.recorder.by_id(f"welcome-{user_id}") == []
        and world.observer.of(EmailQueued, f"welcome-{user_id}") == []
    )
    # (The core's own UserCreated and the welcome mail: tests/plugins/test_onboarding_e2e.py.)


async def test_permanent_reject_is_email_failed_with_the_servers_code(world: GatewayWorld) -> None:
    world.smtp.recorder.reject["nobody@example.com"] = "550 5.1.1 No such user"
    message_id = f"rej-{uuid.uuid4().hex[:8]}"
    before = len(tunnels(world))
    await world.caller.publish(
        MessageSendRequested(
            message_id=message_id,
            recipient="nobody@example.com",
            subject="s",
            body="b",
        )
    )
    failed = await until(lambda: world.observer.of(EmailFailed, message_id), 20, "EmailFailed")
    assert failed[0].error_code == "550" and "No such user" in failed[0].error_message
    answer = await status(world, message_id)
    assert answer.status == pb.DELIVERY_STATUS_FAILED and answer.status_detail.startswith("550")
    # Permanent: one attempt, no retry, nothing sent.
    assert len(tunnels(world)) - before == 1 and world.smtp.recorder.by_id(message_id) == []
    # Through the operator lane too: FAILED at once.
    direct = f"rej-{uuid.uuid4().hex[:8]}"
    assert (await send(world, direct, "nobody@example.com")).status == pb.DELIVERY_STATUS_FAILED
    await until(lambda: world.observer.of(EmailFailed, direct), 20, "EmailFailed for SendMessage")


async def test_smtp_down_retries_then_dead_letter_and_email_failed(world: GatewayWorld) -> None:
    message_id = f"down-{uuid.uuid4().hex[:8]}"
    before = len(tunnels(world))
    world.smtp.stop()
    try:
        await world.caller.publish(
            MessageSendRequested(
                message_id=message_id,
                recipient="ada@example.com",
                subject="s",
                body="b",
            )
        )
        failed = await until(lambda: world.observer.of(EmailFailed, message_id), 30, "EmailFailed after retries")

        async def dead_letter() -> list[Any]:
            async with operator_channel(world.core) as channel:
                stub = event_admin_pb2_grpc.EventAdminServiceStub(channel)
                listed = await stub.ListSubscriptions(event_admin_pb2.ListSubscriptionsRequest(), timeout=5)
                name = next(s.subscription for s in listed.subscriptions if s.subscription.startswith(f"{GATEWAY}/"))
                letters = await stub.ListDeadLetters(
                    event_admin_pb2.ListDeadLettersRequest(subscription=name, limit=100), timeout=5
                )
            found = []
            for letter in letters.dead_letters:
                payload = MessageSendRequested()
                if letter.event.payload.Unpack(payload) and payload.message_id == message_id:
                    found.append(letter)
            return found

        [letter] = await until(dead_letter, 30, "the event in the dead letters")
        assert letter.attempts == MAX_ATTEMPTS
    finally:
        world.smtp.start()
    assert failed[0].error_code in ("EGRESS_UPSTREAM_FAILED", "CONNECTION_FAILED")
    # One tunnel attempt per delivery, each refused by the dead server, each audited once.
    attempts = tunnels(world)[before:]
    assert [r.outcome for r in attempts] == ["UNAVAILABLE"] * MAX_ATTEMPTS
    answer = await status(world, message_id)
    assert answer.status == pb.DELIVERY_STATUS_FAILED


async def test_password_never_in_logs_or_audit(world: GatewayWorld) -> None:
    message_id = f"pw-{uuid.uuid4().hex[:8]}"
    assert (await send(world, message_id, "ada@example.com")).status == pb.DELIVERY_STATUS_DELIVERED
    assert world.smtp.recorder.by_id(message_id)[0].login == USERNAME  # the password was used
    await world.stop_gateway()
    texts = {
        "plugin log": world.plugin_log.read_bytes(),
        "core log": world.core.log_path.read_bytes(),
        "audit": json.dumps([[str(v) for v in row] for row in audit_rows(world.core)]).encode(),
        "plugin store": b"".join(p.read_bytes() for p in world.data_dir.iterdir() if p.is_file()),
    }
    for where, text in texts.items():
        assert PASSWORD.encode() not in text, where
    assert b"ada@example.com" not in texts["plugin store"] and b"ada@example.com" not in texts["plugin log"]


async def test_configuration_is_followed_live_and_the_record_survives_a_restart(world: GatewayWorld) -> None:
    first = f"live-{uuid.uuid4().hex[:8]}"
    assert (await send(world, first, "ada@example.com")).status == pb.DELIVERY_STATUS_DELIVERED
    await world.set_config("smtp_sender", "changed@vivified.test")

    async def sent_with_new_sender() -> bool:
        message_id = f"live-{uuid.uuid4().hex[:8]}"
        await send(world, message_id, "ada@example.com")
        return parsed(world.smtp.recorder.by_id(message_id)[0].data)["From"] == "changed@vivified.test"

    await until(sent_with_new_sender, 15, "the new sender to be used")
    await world.set_config("smtp_sender", SENDER)
    await world.stop_gateway()
    await world.start_gateway()
    answer = await status(world, first)
    assert answer.status == pb.DELIVERY_STATUS_DELIVERED and answer.message_id == first


async def test_manifest_is_valid_and_declares_tunnels_and_the_api_host_with_its_injected_key() -> None:
    from importlib import resources

    from vivified.core.manifest import load_manifest_file, validate_manifest
    from vivified.core.traits import TraitCatalogue

    manifest = load_manifest_file(
        pathlib.Path(str(resources.files("vivified.plugins.email_gateway") / "manifest.yaml"))
    )
    validate_manifest(manifest, TraitCatalogue.load_default())
    assert manifest.id == GATEWAY and list(manifest.security.allowed_tunnels)
    # The API transport: one host, whose key the core injects from the api_key secret.
    assert list(manifest.security.allowed_domains) == ["mail-api.example.com"]
    [credential] = manifest.security.injected_credentials
    assert (credential.host, credential.header, credential.config_key) == (
        "mail-api.example.com",
        "Authorization",
        "api_key",
    )
    assert {c.name for c in manifest.config} >= {
        "smtp_host",
        "smtp_port",
        "smtp_sender",
        "smtp_username",
        "smtp_password",
        "smtp_tls",
    }
