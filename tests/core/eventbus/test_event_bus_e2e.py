"""The event bus through a real core: policy per event type, core-stamped
envelopes, per-subscriber redaction, dedupe, redelivery, dead letters and
their CLI, disabling, and the audit record of each."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import Iterator

import grpc
import pytest

from support.clients import approve, audit_rows, error_info
from support.events import (
    EVENT_BUS,
    MESSAGE_SEND_REQUESTED,
    USER_CREATED,
    Inbox,
    event_plugin,
)
from support.processes import CoreProcess, core_running, run_cli
from support.redis_server import redis_running
from support.waiting import until
from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.events.v1.canonical_pb2 import (
    EmailSent,
    MessageSendRequested,
    UserCreated,
)
from vivified.options.v1 import options_pb2
from vivified.sdk import (
    PermissionDeniedError,
    VivifiedSDKError,
    envelope,
    load_manifest,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module", params=["embedded", "redis"])
def bus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """A core on each backend; every test here runs against both."""
    data_dir = tmp_path_factory.mktemp("bus") / "data"
    flags = ("--heartbeat-interval", "1", "--leaf-ttl", "600", "--event-ack-timeout", "1", "--event-max-attempts", "3")
    with contextlib.ExitStack() as stack:
        if request.param == "redis":
            server = stack.enter_context(redis_running(tmp_path_factory.mktemp("bus-redis")))
            flags += ("--redis-url", server.url)
        yield stack.enter_context(core_running(data_dir, *flags))


def denials(core: CoreProcess, action: str, actor: str) -> list[object]:
    return [r for r in audit_rows(core, action=action, actor=actor) if r.decision == "deny"]


async def test_published_event_reaches_subscribers_with_core_stamped_envelope_and_redaction(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "hr-pub", publishes=[USER_CREATED])
    trusted = await event_plugin(bus, tmp_path, "crm-pii", subscribes=[USER_CREATED], pii=True)
    plain = await event_plugin(bus, tmp_path, "stats-plain", subscribes=[USER_CREATED])
    try:
        trusted_inbox, plain_inbox = Inbox(), Inbox()
        for runtime, inbox in ((trusted, trusted_inbox), (plain, plain_inbox)):
            await runtime.subscribe("users", {UserCreated: inbox}).opened()
        event = envelope(UserCreated(user_id="u-1", username="ada", email="ada@example.com"), "evt-stamp-1")
        event.source_plugin_id = "someone-else"  # the core replaces it
        stub = events_pb2_grpc.EventBusServiceStub(publisher.core_channel)
        ack = await stub.Publish(events_pb2.PublishRequest(event=event), timeout=10)
        assert ack.event_id == "evt-stamp-1" and not ack.duplicate and ack.position

        await until(lambda: trusted_inbox.received and plain_inbox.received, 10, "both deliveries")
        full, full_event = trusted_inbox.received[0]
        cut, cut_event = plain_inbox.received[0]
        assert full.email == "ada@example.com" and full_event.redacted_fields == ()
        assert cut.email == "" and cut.username == "ada" and cut_event.redacted_fields == ("email",)
        for received in (full_event, cut_event):
            assert received.event.source_plugin_id == "hr-pub"
            assert received.event.classification == options_pb2.CLASSIFICATION_PII
            assert received.event.traceparent.startswith("00-")
            assert received.attempt == 1
        redactions = audit_rows(bus, action="event.redact", actor="plugin:stats-plain")
        assert len(redactions) == 1 and json.loads(redactions[0].detail)["fields"] == "email"
        assert len(audit_rows(bus, action="event.deliver", actor="plugin:crm-pii")) == 1
        published = audit_rows(bus, action=f"{EVENT_BUS}/Publish", actor="plugin:hr-pub")
        assert [json.loads(r.detail)["event_id"] for r in published] == ["evt-stamp-1"]
    finally:
        for runtime in (publisher, trusted, plain):
            await runtime.stop()


async def test_republished_event_id_is_acknowledged_once_and_delivered_once(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "dedupe-pub", publishes=[USER_CREATED])
    subscriber = await event_plugin(bus, tmp_path, "dedupe-sub", subscribes=[USER_CREATED])
    try:
        inbox = Inbox()
        await subscriber.subscribe("users", {UserCreated: inbox}).opened()
        first = await publisher.publish(UserCreated(user_id="u-2"), event_id="same-id")
        again = await publisher.publish(UserCreated(user_id="u-2-changed"), event_id="same-id")
        assert again.duplicate and not first.duplicate and again.position == first.position
        await publisher.publish(UserCreated(user_id="u-3"), event_id="next-id")
        await until(lambda: "next-id" in inbox.event_ids(), 10, "the later event")
        assert inbox.event_ids() == ["same-id", "next-id"]
        assert inbox.received[0][0].user_id == "u-2"
    finally:
        await publisher.stop()
        await subscriber.stop()


async def test_publishing_an_undeclared_type_is_denied_with_reason_and_one_audit_record(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "narrow-pub", publishes=[USER_CREATED])
    try:
        with pytest.raises(PermissionDeniedError) as caught:
            await publisher.publish(EmailSent(email_id="e-1"))
        assert caught.value.reason == "EVENT_NOT_DECLARED"
        rows = denials(bus, f"{EVENT_BUS}/Publish", "plugin:narrow-pub")
        assert len(rows) == 1
        assert rows[0].reason == "EVENT_NOT_DECLARED" and rows[0].rule_id == "manifest:narrow-pub:publishes"
    finally:
        await publisher.stop()


async def test_payload_that_does_not_match_its_event_type_is_invalid(bus: CoreProcess, tmp_path: pathlib.Path) -> None:
    publisher = await event_plugin(bus, tmp_path, "liar-pub", publishes=[USER_CREATED])
    try:
        stub = events_pb2_grpc.EventBusServiceStub(publisher.core_channel)
        event = envelope(EmailSent(email_id="x"), "mismatch-1")
        event.event_type = USER_CREATED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(events_pb2.PublishRequest(event=event), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "EVENT_PAYLOAD_MISMATCH"
        garbage = envelope(UserCreated(user_id="x"), "garbage-1")
        garbage.payload.value = b"\xff\xff\xff"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(events_pb2.PublishRequest(event=garbage), timeout=10)
        assert error_info(caught.value).reason == "EVENT_PAYLOAD_MISMATCH"
        # A field the core's schema does not define could not be classified or redacted.
        smuggled = envelope(UserCreated(user_id="x"), "smuggled-1")
        smuggled.payload.value += b"\x98\x06\x01"  # field 99, varint 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(events_pb2.PublishRequest(event=smuggled), timeout=10)
        assert error_info(caught.value).reason == "EVENT_PAYLOAD_MISMATCH"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Publish(events_pb2.PublishRequest(event=envelope(UserCreated(), "bad id!")), timeout=10)
        assert error_info(caught.value).reason == "EVENT_INVALID"
    finally:
        await publisher.stop()


@pytest.mark.parametrize(
    "event_type",
    [
        "*",
        ">",
        "..",
        "vivified.events.v1.*",
        "vivified.events.v1.>",
        f"{USER_CREATED}\x00suffix",
        USER_CREATED.upper(),
        "vivified.events.v1.usercreated",
        MESSAGE_SEND_REQUESTED,  # a real type, just not declared
    ],
)
async def test_c7_wildcard_and_lookalike_subscriptions_are_denied(
    bus: CoreProcess, tmp_path: pathlib.Path, event_type: str
) -> None:
    plugin_id = f"wild-{abs(hash(event_type)) % 10**8}"
    subscriber = await event_plugin(bus, tmp_path, plugin_id, subscribes=[USER_CREATED])
    try:
        stub = events_pb2_grpc.EventBusServiceStub(subscriber.core_channel)
        call = stub.Subscribe(
            iter(
                [
                    events_pb2.SubscribeRequest(
                        open=events_pb2.SubscriptionOpen(subscription="s", event_types=[event_type])
                    )
                ]
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "EVENT_NOT_DECLARED"
        rows = denials(bus, f"{EVENT_BUS}/Subscribe", f"plugin:{plugin_id}")
        assert len(rows) == 1 and rows[0].rule_id == f"manifest:{plugin_id}:subscribes"
    finally:
        await subscriber.stop()


async def test_d2_failing_handler_is_redelivered_then_dead_lettered_and_replayed_by_the_cli(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "dlq-pub", publishes=[MESSAGE_SEND_REQUESTED])
    subscriber = await event_plugin(bus, tmp_path, "dlq-sub", subscribes=[MESSAGE_SEND_REQUESTED])
    try:
        inbox = Inbox(failing=True)
        await subscriber.subscribe("sender", {MessageSendRequested: inbox}).opened()
        await publisher.publish(MessageSendRequested(message_id="poison", body="secret diagnosis"), event_id="poison")
        await until(lambda: len(inbox.received) >= 3, 15, "three attempts")
        assert [e.attempt for _, e in inbox.received[:3]] == [1, 2, 3]
        inbox.failing = False
        await publisher.publish(MessageSendRequested(message_id="healthy"), event_id="healthy")
        await until(lambda: "healthy" in inbox.event_ids(), 10, "the next event to flow")
        await asyncio.sleep(1.5)  # past the ack timeout: the poison event is not delivered a fourth time
        assert inbox.event_ids().count("poison") == 3

        listed = run_cli(bus, "events", "--json", "dlq", "list", "dlq-sub/sender")
        assert listed.returncode == 0, listed.stderr
        letters = json.loads(listed.stdout)["dead_letters"]
        assert len(letters) == 1 and letters[0]["event"]["event_id"] == "poison"
        assert letters[0]["attempts"] == 3 and "attempts" in letters[0]["reason"]
        assert "secret diagnosis" not in listed.stdout  # PHI cleared for operators

        replayed = run_cli(bus, "events", "dlq", "replay", "dlq-sub/sender", "--all")
        assert replayed.returncode == 0 and "replayed 1" in replayed.stdout, replayed.stderr
        await until(lambda: inbox.event_ids().count("poison") == 4, 10, "the replayed delivery")
        assert inbox.received[-1][1].attempt == 1
        for verb in ("ListDeadLetters", "ReplayDeadLetters"):
            rows = audit_rows(bus, action=f"/vivified.admin.v1.EventAdminService/{verb}", actor="operator:admin")
            assert len(rows) == 1 and rows[0].resource == "subscription/dlq-sub/sender"
        subs = json.loads(run_cli(bus, "events", "--json", "subscriptions").stdout)["subscriptions"]
        assert any(s["subscription"] == "dlq-sub/sender" for s in subs)
    finally:
        await publisher.stop()
        await subscriber.stop()


async def test_disabled_plugin_stops_receiving_and_publishing_at_once(bus: CoreProcess, tmp_path: pathlib.Path) -> None:
    publisher = await event_plugin(bus, tmp_path, "off-pub", publishes=[USER_CREATED])
    subscriber = await event_plugin(bus, tmp_path, "off-sub", subscribes=[USER_CREATED])
    try:
        inbox = Inbox()
        subscription = subscriber.subscribe("users", {UserCreated: inbox})
        await subscription.opened()
        assert run_cli(bus, "plugins", "disable", "off-sub", "--reason", "test").returncode == 0
        with pytest.raises(PermissionDeniedError):
            await asyncio.wait_for(subscription.wait_closed(), 10)
        await publisher.publish(UserCreated(user_id="after-disable"))
        await asyncio.sleep(0.5)
        assert inbox.received == []
        assert run_cli(bus, "plugins", "disable", "off-pub").returncode == 0
        with pytest.raises(PermissionDeniedError) as caught:
            await publisher.publish(UserCreated(user_id="refused"))
        assert caught.value.reason == "PLUGIN_DISABLED"
    finally:
        await publisher.stop()
        await subscriber.stop()


async def test_d5_streamed_publish_acknowledges_every_event_and_delivery_keeps_publish_order(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "stream-pub", publishes=[USER_CREATED])
    subscriber = await event_plugin(bus, tmp_path, "stream-sub", subscribes=[USER_CREATED])
    try:
        inbox = Inbox()
        await subscriber.subscribe("users", {UserCreated: inbox}).opened()
        ids = [f"s-{i:04d}" for i in range(400)]
        async with publisher.publish_stream() as stream:
            acks = [stream.send(UserCreated(user_id=i), event_id=i) for i in ids]
        assert [a.result().event_id for a in acks] == ids
        await until(lambda: len(inbox.received) >= len(ids), 20, "every streamed event")
        assert inbox.event_ids() == ids  # one consumer, no failures: publish order
        records = audit_rows(bus, action="event.publish", actor="plugin:stream-pub")
        assert len(records) == len(ids)
    finally:
        await publisher.stop()
        await subscriber.stop()


async def test_streamed_publish_refuses_one_event_and_goes_on(bus: CoreProcess, tmp_path: pathlib.Path) -> None:
    publisher = await event_plugin(bus, tmp_path, "half-pub", publishes=[USER_CREATED])
    try:
        stream = publisher.publish_stream()
        good = stream.send(UserCreated(user_id="ok"), event_id="good-1")
        bad = stream.send(EmailSent(email_id="nope"), event_id="bad-1")
        later = stream.send(UserCreated(user_id="ok too"), event_id="good-2")
        with pytest.raises(PermissionDeniedError) as caught:
            await stream.close()
        assert caught.value.reason == "EVENT_NOT_DECLARED"
        assert good.result().event_id == "good-1" and later.result().event_id == "good-2"
        assert isinstance(bad.exception(), PermissionDeniedError)
        rows = denials(bus, "event.publish", "plugin:half-pub")
        assert len(rows) == 1 and rows[0].reason == "EVENT_NOT_DECLARED"
        assert rows[0].rule_id == "manifest:half-pub:publishes" and rows[0].outcome == "PERMISSION_DENIED"
        allowed = [r for r in audit_rows(bus, action="event.publish", actor="plugin:half-pub") if r.decision == "allow"]
        assert sorted(json.loads(r.detail)["event_id"] for r in allowed) == ["good-1", "good-2"]
    finally:
        await publisher.stop()


async def test_c3_trait_withdrawn_while_subscribed_takes_effect_on_the_next_delivery(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "c3-pub", publishes=[USER_CREATED])
    subscriber = await event_plugin(bus, tmp_path, "c3-sub", subscribes=[USER_CREATED], pii=True)
    try:
        inbox = Inbox()
        subscription = subscriber.subscribe("users", {UserCreated: inbox})
        await subscription.opened()
        await publisher.publish(UserCreated(user_id="before", email="a@example.com"))
        await until(lambda: inbox.received, 10, "first delivery")
        assert inbox.received[0][0].email == "a@example.com"
        # The operator re-approves without handles_pii: the open stream gets nothing more.
        manifest = load_manifest(tmp_path / "c3-sub.yaml")
        await approve(bus, manifest, replace=True, granted_traits=["storage_plugin"])
        await publisher.publish(UserCreated(user_id="after", email="b@example.com"))
        with pytest.raises(VivifiedSDKError) as caught:
            await asyncio.wait_for(subscription.wait_closed(), 10)
        assert isinstance(caught.value, PermissionDeniedError) and caught.value.reason == "PLUGIN_REVOKED"
        assert [p.user_id for p, _ in inbox.received] == ["before"]
        # The withdrawal is one audit record (the operator's re-approval); the
        # later event was never delivered to c3-sub, so no delivery record.
        approvals = audit_rows(
            bus, action="/vivified.admin.v1.PluginAdminService/ApprovePlugin", resource="plugin/c3-sub"
        )
        assert len(approvals) == 2 and approvals[-1].actor == "operator:admin"
        delivered = audit_rows(bus, action="event.deliver", actor="plugin:c3-sub")
        assert len(delivered) == 1
        # The stream's closure is a denial of its own: exactly one record with its reason.
        closed = denials(bus, f"{EVENT_BUS}/Subscribe", "plugin:c3-sub")
        assert [(r.outcome, r.reason, r.rule_id) for r in closed] == [
            ("PERMISSION_DENIED", "PLUGIN_REVOKED", "status-gate")
        ]
    finally:
        await publisher.stop()
        await subscriber.stop()
