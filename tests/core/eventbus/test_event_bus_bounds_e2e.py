"""Bounds on what plugins make the event bus keep, through a real core on each
backend (docs/security.md D6): durable subscriptions per plugin, a plugin deleting
its own, and operators deleting one with `vivified events subscriptions delete`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from support.clients import audit_rows, bootstrap_channel, error_info, operator_channel
from support.events import EVENT_BUS, USER_CREATED, Inbox, event_plugin
from support.processes import (
    CoreProcess,
    clean_env,
    core_running,
    run_cli,
    run_vivified,
)
from support.redis_server import redis_running
from support.users import bearer, login, users_pb
from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.identity.v1 import api_keys_pb2 as keys_pb
from vivified.identity.v1 import api_keys_pb2_grpc as keys_grpc
from vivified.identity.v1 import user_admin_pb2_grpc as users_grpc
from vivified.sdk import ResourceExhaustedError

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DELETE = "/vivified.admin.v1.EventAdminService/DeleteSubscription"
PASSWORD = "CANARY-bounds-pw-5c1e9a"


@pytest.fixture(scope="module", params=["embedded", "redis"])
def bus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    data_dir = tmp_path_factory.mktemp("bounds") / "data"
    flags = ("--heartbeat-interval", "1", "--leaf-ttl", "600", "--event-max-subscriptions", "2")
    with contextlib.ExitStack() as stack:
        if request.param == "redis":
            server = stack.enter_context(redis_running(tmp_path_factory.mktemp("bounds-redis")))
            flags += ("--redis-url", server.url)
        yield stack.enter_context(core_running(data_dir, *flags))


def subscriptions(core: CoreProcess) -> set[str]:
    listed = run_cli(core, "events", "--json", "subscriptions")
    assert listed.returncode == 0, listed.stderr
    return {s["subscription"] for s in json.loads(listed.stdout).get("subscriptions", [])}


async def test_a_plugin_beyond_its_subscription_cap_is_refused_once_and_audited(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    plugin = await event_plugin(bus, tmp_path, "capped-sub", subscribes=[USER_CREATED])
    try:
        for name in ("one", "two"):
            await plugin.subscribe(name, {UserCreated: Inbox()}).opened()

        third = plugin.subscribe("three", {UserCreated: Inbox()})
        with pytest.raises(ResourceExhaustedError) as refused:
            await third.opened()

        assert refused.value.reason == "SUBSCRIPTION_LIMIT" and "2" in refused.value.message
        await asyncio.sleep(1.0)  # the SDK does not retry a refusal reopening cannot cure
        rows = [
            r
            for r in audit_rows(bus, action=f"{EVENT_BUS}/Subscribe", actor="plugin:capped-sub")
            if r.outcome == "RESOURCE_EXHAUSTED"
        ]
        assert [(r.decision, r.reason, r.rule_id, r.resource) for r in rows] == [
            ("deny", "SUBSCRIPTION_LIMIT", "event-subscription-cap", "subscription/capped-sub/three")
        ]
        assert {"capped-sub/one", "capped-sub/two"} <= subscriptions(bus)
        assert "capped-sub/three" not in subscriptions(bus)
    finally:
        await plugin.stop()


async def test_a_plugin_deletes_its_own_subscription_and_frees_its_place(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    plugin = await event_plugin(bus, tmp_path, "tidy-sub", subscribes=[USER_CREATED])
    try:
        first = plugin.subscribe("one", {UserCreated: Inbox()})
        await first.opened()
        await plugin.subscribe("two", {UserCreated: Inbox()}).opened()

        await asyncio.wait_for(first.delete(), 10)

        assert "tidy-sub/one" not in subscriptions(bus) and "tidy-sub/two" in subscriptions(bus)
        [row] = audit_rows(bus, action="event.subscription.delete", actor="plugin:tidy-sub")
        assert (row.decision, row.resource) == ("allow", "subscription/tidy-sub/one")
        await plugin.subscribe("three", {UserCreated: Inbox()}).opened()  # its place is free again
        assert {"tidy-sub/two", "tidy-sub/three"} <= subscriptions(bus)
    finally:
        await plugin.stop()


async def _viewer_key(core: CoreProcess, username: str) -> tuple[str, str]:
    async with operator_channel(core) as channel:
        created = await users_grpc.UserAdminServiceStub(channel).CreateUser(
            users_pb.CreateUserRequest(username=username, password=PASSWORD, roles=["viewer"]), timeout=10
        )
    token = (await login(core, username, PASSWORD)).tokens.access_token
    async with bootstrap_channel(core) as channel:
        reply = await keys_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            keys_pb.CreateApiKeyRequest(name="cli", scopes=["viewer"], ttl_seconds=3600),
            metadata=bearer(token),
            timeout=10,
        )
    return str(reply.api_key), str(created.user.user_id)


async def test_an_operator_deletes_a_subscription_and_its_open_stream_ends(
    bus: CoreProcess, tmp_path: pathlib.Path
) -> None:
    publisher = await event_plugin(bus, tmp_path, "gone-pub", publishes=[USER_CREATED])
    subscriber = await event_plugin(bus, tmp_path, "gone-sub", subscribes=[USER_CREATED])
    release = asyncio.Event()

    async def requests() -> AsyncIterator[events_pb2.SubscribeRequest]:
        yield events_pb2.SubscribeRequest(
            open=events_pb2.SubscriptionOpen(subscription="orders", event_types=[USER_CREATED])
        )
        await release.wait()  # never acks: the delivery stays pending

    stub = events_pb2_grpc.EventBusServiceStub(subscriber.core_channel)
    call = stub.Subscribe(requests())
    try:
        stream = aiter(call)
        assert (await anext(stream)).WhichOneof("response") == "opened"
        await publisher.publish(UserCreated(user_id="pending-one"))
        assert (await asyncio.wait_for(anext(stream), 10)).WhichOneof("response") == "delivery"

        # A viewer may not delete: refused, audited once, nothing removed.
        key, viewer_id = await _viewer_key(bus, f"vic-{abs(hash(str(tmp_path))) % 10**6}")
        empty = tmp_path / "client"
        empty.mkdir()
        refused = run_vivified(
            "events",
            "--data-dir",
            str(empty),
            "--core",
            bus.bootstrap_address,
            "subscriptions",
            "delete",
            "gone-sub/orders",
            "--reason",
            "cleanup",
            env=clean_env(VIVIFIED_API_KEY=key, VIVIFIED_CA_FILE=str(bus.operator_dir / "ca.crt")),
        )
        assert refused.returncode == 1
        assert "PERMISSION_DENIED" in refused.stderr and "[POLICY_DENIED]" in refused.stderr, refused.stderr
        denied = audit_rows(bus, action=DELETE, actor=f"user:{viewer_id}")
        assert [(r.decision, r.reason, r.outcome) for r in denied] == [("deny", "POLICY_DENIED", "PERMISSION_DENIED")]
        assert "gone-sub/orders" in subscriptions(bus)

        deleted = run_cli(bus, "events", "subscriptions", "delete", "gone-sub/orders", "--reason", "plugin retired")
        assert deleted.returncode == 0, deleted.stderr
        assert "deleted subscription gone-sub/orders" in deleted.stdout

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                # Creating the viewer above made the core publish UserCreated (source
                # `core`); it may arrive before the stream ends, nothing else may.
                got = await asyncio.wait_for(anext(stream), 10)
                assert got.delivery.event.source_plugin_id == "core", got
        assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(ended.value).reason == "SUBSCRIPTION_MISMATCH"
        assert "gone-sub/orders" not in subscriptions(bus)
        [row] = audit_rows(bus, action=DELETE, actor="operator:admin")
        assert (row.decision, row.outcome, row.resource) == ("allow", "OK", "subscription/gone-sub/orders")
        assert json.loads(row.detail)["change_reason"] == "plugin retired"

        again = run_cli(bus, "events", "subscriptions", "delete", "gone-sub/orders", "--reason", "twice")
        assert again.returncode == 1 and "NOT_FOUND" in again.stderr and "[SUBSCRIPTION_NOT_FOUND]" in again.stderr
        missing = [r for r in audit_rows(bus, action=DELETE, actor="operator:admin") if r.outcome == "NOT_FOUND"]
        assert [(r.decision, r.reason) for r in missing] == [("allow", "SUBSCRIPTION_NOT_FOUND")]
    finally:
        release.set()
        call.cancel()
        await publisher.stop()
        await subscriber.stop()
