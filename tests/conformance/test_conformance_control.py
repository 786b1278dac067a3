"""The conformance checks that need the plugin's side of the story, read from
the control hook the suite defines (docs/plugin-protocol.md, "Conformance
control hook"): a file named by VIVIFIED_CONFORMANCE_CONTROL that the plugin
appends JSON lines to.

- M1: while the suite holds Init back, the plugin answers health NOT_SERVING
  to the core, the core lists it unhealthy and routes nothing to it (a
  brokered call is refused UNAVAILABLE TARGET_UNAVAILABLE, audited once); once
  released, the core's retried Init succeeds and only then is it SERVING and
  routed to.
- Events: it acks the suite's events of each type it subscribes to, nacks the
  one it is told to, takes the redelivery (attempt 2) and acks it; the core
  has nothing pending, undelivered or dead-lettered for it, and it is still
  alive and healthy.
- Errors: the core's refusals of a call it may not make and a fetch of a host
  it may not reach become the plugin's own typed errors, carrying the code,
  reason, domain and rule id the core sent (compared with the core's audit
  record of each refusal: exactly one).

A check that cannot apply to a plugin (one that subscribes to nothing) is
skipped with a reason naming the plugin, so the report says so per plugin."""

from __future__ import annotations

import asyncio
import pathlib
import re
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conformance.conftest import (
    SYNC_BOUND,
    RunningPlugin,
    core_credentials,
    healthy,
    listed,
    plugin_target,
    start_plugin,
)
from conformance.plugins import PluginUnderTest
from support.clients import admitted_plugin, audit_rows, error_info, operator_channel, plugin_channel
from support.processes import CoreProcess, core_running, stop_process
from support.waiting import until
from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.core.manifest import load_manifest_file
from vivified.events.v1 import events_pb2, events_pb2_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

REGISTRY = "/vivified.registry.v1.PluginRegistryService"
FETCH = "/vivified.egress.v1.EgressProxyService/Fetch"
ABSENT_CALL = "/vivified.communication.v1.CommunicationPluginService/GetMessageStatus"


@pytest.fixture(scope="module")
def m1_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """Heartbeats every second; each Init attempt gives up after two seconds."""
    data_dir = tmp_path_factory.mktemp("conformance-m1") / "data"
    with core_running(
        data_dir, *SYNC_BOUND, "--heartbeat-interval", "1", "--init-timeout", "2", "--leaf-ttl", "600"
    ) as core:
        yield core


async def _health(core: CoreProcess, plugin_id: str, endpoint: str) -> int:
    async with grpc.aio.secure_channel(
        endpoint, core_credentials(core), options=plugin_target(core, plugin_id)
    ) as channel:
        checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)  # type: ignore[attr-defined]
    return int(checked.status)


async def test_m1_serves_health_only_after_init_and_is_routed_nothing_before(
    m1_core: CoreProcess, under_test: PluginUnderTest, tmp_path: pathlib.Path
) -> None:
    core, plugin_id, probe = m1_core, under_test.plugin_id, under_test.probe
    running = await start_plugin(core, under_test, tmp_path, hold_init=True)
    try:
        caller_id = f"m1-caller-{plugin_id}"[:63]  # one per plugin: the module's core outlives each run
        caller = await admitted_plugin(core, caller_id, calls=[{"plugin_id": plugin_id, "method": probe}])
        state = await until(lambda: listed(core, plugin_id), 10, "the plugin listed")
        assert state.endpoint and state.health != admin_pb.PLUGIN_HEALTH_HEALTHY
        # The plugin itself: NOT_SERVING to the core before an Init succeeded.
        assert await _health(core, plugin_id, state.endpoint) == health_pb2.HealthCheckResponse.NOT_SERVING
        # The core: a brokered call is refused before it reaches the plugin, with one audit record.
        async with plugin_channel(core, caller) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(f"/{probe}")(b"", metadata=(("x-vivified-target", plugin_id),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(refused.value).reason == "TARGET_UNAVAILABLE"
        rows = audit_rows(core, actor=f"plugin:{caller_id}", action=f"/{probe}")
        assert [(r.decision, r.reason, r.outcome) for r in rows] == [("allow", "TARGET_UNAVAILABLE", "UNAVAILABLE")]
        assert running.control("init"), "the core never sent Init"

        # Released: the core's retried Init succeeds, and only then is it SERVING and routed to.
        running.control_path.with_name(running.control_path.name + ".hold-init").unlink()
        await until(lambda: healthy(core, plugin_id), 40, f"a retried Init to succeed:\n{running.log()}")
        assert len(running.control("init")) >= 1
        assert await _health(core, plugin_id, state.endpoint) == health_pb2.HealthCheckResponse.SERVING
        async with plugin_channel(core, caller) as channel:
            try:
                await channel.unary_unary(f"/{probe}")(b"", metadata=(("x-vivified-target", plugin_id),), timeout=10)
                answered = "OK"
            except grpc.aio.AioRpcError as err:  # the plugin's own answer to an empty request
                answered = f"{err.code().name}/{error_info(err).reason}"
        assert answered != "UNAVAILABLE/TARGET_UNAVAILABLE", answered
        rows = audit_rows(core, actor=f"plugin:{caller_id}", action=f"/{probe}")
        assert len(rows) == 2 and rows[-1].reason != "TARGET_UNAVAILABLE"
    finally:
        stop_process(running.process)  # type: ignore[arg-type]


async def _subscriptions(core: CoreProcess, plugin_id: str) -> list[event_admin_pb2.SubscriptionInfo]:
    async with operator_channel(core) as channel:
        reply = await event_admin_pb2_grpc.EventAdminServiceStub(channel).ListSubscriptions(
            event_admin_pb2.ListSubscriptionsRequest(), timeout=5
        )
    return [s for s in reply.subscriptions if s.subscription.startswith(f"{plugin_id}/")]


async def test_acks_nacks_and_survives_redelivery_of_the_events_it_subscribes_to(plugin: RunningPlugin) -> None:
    core, spec = plugin.core, plugin.spec
    if not spec.subscribes:
        pytest.skip(f"not applicable to {spec.name}: its manifest subscribes to no event")
    opened = await until(
        lambda: _subscriptions(core, spec.plugin_id),
        20,
        f"{spec.name} to open the subscription its manifest declares:\n{plugin.log()}",
    )
    publisher = await admitted_plugin(core, "conformance-publisher", publishes=spec.subscribes)
    sent: dict[str, tuple[str, str]] = {}  # event type -> (ack id, nack id)
    async with plugin_channel(core, publisher) as channel:
        bus = events_pb2_grpc.EventBusServiceStub(channel)
        for event_type in spec.subscribes:
            tag = uuid.uuid4().hex[:8]
            ids = (f"conformance-ack-{tag}", f"conformance-nack-{tag}")
            for event_id in ids:
                # An empty payload of the type: valid for any message.
                payload = any_pb2.Any(type_url=f"type.googleapis.com/{event_type}", value=b"")
                await bus.Publish(
                    events_pb2.PublishRequest(
                        event=events_pb2.Event(event_id=event_id, event_type=event_type, payload=payload)
                    ),
                    timeout=10,
                )
            sent[event_type] = ids

    def handled() -> list[str]:
        """Event types whose ack event was acked and whose nack event was nacked, redelivered and acked."""
        records = plugin.control("event")
        done = []
        for event_type, (ack_id, nack_id) in sent.items():
            ack = [(r["attempt"], r["action"]) for r in records if r["event_id"] == ack_id]
            nack = [(r["attempt"], r["action"]) for r in records if r["event_id"] == nack_id]
            if ack == [(1, "ack")] and nack[:2] == [(1, "nack"), (2, "ack")]:
                done.append(event_type)
        return done

    types = await until(handled, 30, f"{spec.name} to ack, nack and take the redelivery: {plugin.control('event')}")
    await asyncio.sleep(1.0)  # anything delivered again after an ack would show up here
    records = plugin.control("event")
    for event_type in types:
        ack_id, nack_id = sent[event_type]
        assert [r["attempt"] for r in records if r["event_id"] == ack_id] == [1], records
        assert [(r["attempt"], r["action"]) for r in records if r["event_id"] == nack_id] == [(1, "nack"), (2, "ack")]
        assert {r["event_type"] for r in records if r["event_id"] in (ack_id, nack_id)} == {event_type}

    async def settled() -> bool:
        return all(s.pending == 0 and s.undelivered == 0 for s in await _subscriptions(core, spec.plugin_id))

    await until(
        settled, 10, f"the core to have nothing pending for {spec.name}: {await _subscriptions(core, spec.plugin_id)}"
    )
    async with operator_channel(core) as channel:
        admin = event_admin_pb2_grpc.EventAdminServiceStub(channel)
        for subscription in opened:
            dead = await admin.ListDeadLetters(
                event_admin_pb2.ListDeadLettersRequest(subscription=subscription.subscription, limit=100), timeout=5
            )
            assert not [d for d in dead.dead_letters if d.event.event_id.startswith("conformance-")]
    # It survived the redelivery: still running and healthy.
    assert plugin.process.poll() is None  # type: ignore[attr-defined]
    assert await healthy(core, spec.plugin_id), plugin.log()


def _typed_name(code: str) -> str:
    """PERMISSION_DENIED -> PermissionDenied: the typed error's class name must carry it."""
    return "".join(part.capitalize() for part in code.split("_"))


async def test_maps_core_errors_to_its_own_typed_errors(plugin: RunningPlugin) -> None:
    core, spec = plugin.core, plugin.spec
    records = await until(
        lambda: (r := plugin.control("error")) and len(r) >= 2 and r,
        20,
        f"{spec.name} to report its error probes:\n{plugin.log()}",
    )
    by_operation = {r["operation"]: r for r in records}
    assert set(by_operation) == {"call", "fetch"}
    actions = {"call": ABSENT_CALL, "fetch": FETCH}
    # This run of the plugin: records after its (last) registration; the module's core outlives each run.
    since = audit_rows(core, action=f"{REGISTRY}/Register", resource=f"plugin/{spec.plugin_id}")[-1].seq
    for operation, record in by_operation.items():
        rows = [
            r for r in audit_rows(core, actor=f"plugin:{spec.plugin_id}", action=actions[operation]) if r.seq > since
        ]
        assert len(rows) == 1, (operation, rows)  # exactly one record of the core's refusal
        row = rows[0]
        # The typed error carries what the core sent: code, reason, domain, and the deciding rule's id.
        assert record["code"] == row.outcome, (operation, record, row.outcome)
        assert record["code"] == "PERMISSION_DENIED", (operation, record)
        assert record["reason"] == row.reason and record["reason"], (operation, record, row.reason)
        assert re.fullmatch(r"vivified\.[a-z.]+", record["domain"]), (operation, record)
        assert _typed_name(record["code"]) in record["error"], (operation, record)
        if row.rule_id:
            assert record["metadata"].get("rule_id") == row.rule_id, (operation, record, row.rule_id)
    assert load_manifest_file(spec.manifest).id == spec.plugin_id
