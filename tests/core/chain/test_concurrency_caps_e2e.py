"""Per-principal concurrency caps through a real core (docs/security.md J2): one
plugin's streams and unary calls are capped over all its connections, refusals
are RESOURCE_EXHAUSTED with a reason and rule id and one audit record each, a
neighbour's publish latency stays within 2x, and slots come back when calls
end, cancellation included."""

from __future__ import annotations

import asyncio
import pathlib
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest

from support.clients import admitted_plugin, audit_rows, error_info, plugin_channel
from support.events import EMAIL_SENT, EVENT_BUS, USER_CREATED, event_plugin
from support.lane import RETRIEVE_METHOD, STORAGE, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, core_running
from support.waiting import until
from vivified.config.v1 import config_pb2
from vivified.config.v1 import config_pb2_grpc as config_grpc
from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.events.v1.canonical_pb2 import UserCreated
from vivified.storage.v1 import storage_pb2

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e, pytest.mark.slow]

SUBSCRIBE = f"{EVENT_BUS}/Subscribe"


def metric(core: CoreProcess, name: str) -> float:
    text = urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def publish_latencies(publish: object, n: int) -> list[float]:
    took = []
    for i in range(n):
        started = time.perf_counter()
        await publish(UserCreated(user_id=f"n-{i}"))  # type: ignore[operator]
        took.append(time.perf_counter() - started)
    return took


async def open_subscribe(
    stub: events_pb2_grpc.EventBusServiceStub, name: str, hold: asyncio.Event
) -> tuple[grpc.aio.StreamStreamCall, grpc.aio.AioRpcError | None]:
    """Open one Subscribe stream: (the call, None) once the core answered
    `opened`, or (the call, its error) when it refused. The open message goes
    from a request iterator, which the client sends from its own task: a direct
    `write` racing the refusal fails locally and hides the core's status."""
    request = events_pb2.SubscribeRequest(open=events_pb2.SubscriptionOpen(subscription=name, event_types=[EMAIL_SENT]))

    async def requests() -> AsyncIterator[events_pb2.SubscribeRequest]:
        yield request
        await hold.wait()

    call = stub.Subscribe(requests())
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as err:
        return call, err
    assert first.WhichOneof("response") == "opened", first
    return call, None


async def open_watch(
    stub: config_grpc.ConfigServiceStub,
) -> tuple[grpc.aio.UnaryStreamCall, grpc.aio.AioRpcError | None]:
    """Open one WatchMyConfig stream (server streaming: the request goes with the
    call's headers, so a refusal always reaches the client intact)."""
    call = stub.WatchMyConfig(config_pb2.WatchMyConfigRequest())
    try:
        await call.read()
    except grpc.aio.AioRpcError as err:
        return call, err
    return call, None


# grpc-python's client, not the core: when a server ends a bidirectional call
# while the client is still sending its first message, the client may report
# INTERNAL "Internal error from Core" instead of the status it was sent (the
# core's audit record shows the refusal).
CLIENT_LOST = (grpc.StatusCode.INTERNAL, "Internal error from Core")


@pytest.mark.serial
async def test_j2_streams_capped_per_plugin_across_connections_and_neighbour_p99_within_2x(
    tmp_path: pathlib.Path,
) -> None:
    """2,000 Subscribe streams over 8 connections and 16 names (the issue's
    attack; the call rate is raised so pacing is not what stops it): 256 open,
    the rest refused, and the neighbour's publish p99 while the 256 are held
    stays within 2x of its p99 measured before and after the attack in the
    same run."""
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--call-rate", "5000") as core:
        neighbour = await event_plugin(core, tmp_path, "j2-neighbour", publishes=[USER_CREATED])
        attacker = await admitted_plugin(core, "j2-attacker", subscribes=[EMAIL_SENT])
        channels = [plugin_channel(core, attacker) for _ in range(8)]
        held: list[grpc.aio.StreamStreamCall] = []
        hold = asyncio.Event()
        try:
            await publish_latencies(neighbour.publish, 50)  # warm-up
            baseline = await publish_latencies(neighbour.publish, 400)
            own = metric(core, "vivified_streams_open")  # the neighbour's, before the attack
            stubs = [events_pb2_grpc.EventBusServiceStub(c) for c in channels]
            watchers = [config_grpc.ConfigServiceStub(c) for c in channels]
            opened = await asyncio.gather(
                *(
                    open_subscribe(stubs[i % 8], f"name-{i % 16}", hold) if i % 2 else open_watch(watchers[i % 8])
                    for i in range(2000)
                )
            )
            held = [call for call, err in opened if err is None]
            refused = [(i % 2, err) for i, (_, err) in enumerate(opened) if err is not None]
            assert len(held) == 256
            assert len(refused) == 2000 - 256
            reached = [err for _, err in refused if (err.code(), err.details()) != CLIENT_LOST]
            assert all(kind == 1 for kind, err in refused if (err.code(), err.details()) == CLIENT_LOST)
            assert len(reached) >= len(refused) // 2
            assert {e.code() for e in reached} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            infos = {(error_info(e).reason, error_info(e).metadata["rule_id"]) for e in reached}
            assert infos == {("STREAM_LIMIT", "concurrency-streams")}

            await asyncio.sleep(0.5)  # the attack's refusals are over; its streams stay open
            under_attack = await publish_latencies(neighbour.publish, 800)
            rows = [r for r in audit_rows(core, actor="plugin:j2-attacker") if r.outcome == "RESOURCE_EXHAUSTED"]
            assert len(rows) == len(refused)  # exactly one record per refused stream
            assert {(r.decision, r.reason, r.rule_id) for r in rows} == {
                ("deny", "STREAM_LIMIT", "concurrency-streams")
            }
            assert metric(core, "vivified_streams_open_peak") <= 256 + 8  # the neighbour's own, at most

            # Cancelling streams gives their slots back at once: as many new ones open.
            for call in held[:50]:
                call.cancel()
            # Exactly the neighbour's own streams besides the attacker's: a margin here
            # let the wait end with one cancelled slot not yet freed (49 of 50 reopened).
            await until(lambda: metric(core, "vivified_streams_open") <= 206 + own, 10, "cancelled slots to free")
            again = await asyncio.gather(*(open_watch(watchers[i % 8]) for i in range(60)))
            assert sum(1 for _, err in again if err is None) == 50
            held = held[50:] + [call for call, err in again if err is None]

            # The baseline is measured before the attack and after it ends, in
            # this run, so load from elsewhere on the machine affects both sides.
            for call in held:
                call.cancel()
            held = []
            await until(lambda: metric(core, "vivified_streams_open") <= own, 10, "the attack's streams to close")
            baseline += await publish_latencies(neighbour.publish, 400)
            ratio = p99(under_attack) / p99(baseline)
            print(
                f"J2 neighbour publish p99: baseline {p99(baseline) * 1000:.2f} ms, "
                f"under attack (256 streams held) {p99(under_attack) * 1000:.2f} ms, ratio {ratio:.2f}"
            )
            assert ratio <= 2.0, (p99(baseline), p99(under_attack))
        finally:
            hold.set()
            for call in held:
                call.cancel()
            for channel in channels:
                await channel.close()
            await neighbour.stop()


async def test_j2_unary_calls_capped_per_plugin_across_connections_and_released_on_cancel(
    tmp_path: pathlib.Path,
) -> None:
    """A plugin with `--max-calls 8` unary calls in flight on two connections
    gets CALL_LIMIT for the ninth; cancelling in-flight calls frees their slots
    while the callee is still busy with them."""
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--max-calls", "8") as core:
        slow = RecordingStore(delay=30)
        target = await started_plugin(core, write_manifest(tmp_path, "j2-slow", provides=[RETRIEVE_METHOD]), [slow])
        caller = await admitted_plugin(
            core,
            "j2-caller",
            contracts=[STORAGE],
            traits=["storage_plugin"],
            calls=[{"plugin_id": "j2-slow", "method": RETRIEVE_METHOD}],
        )
        channels = [plugin_channel(core, caller) for _ in range(2)]
        try:

            def retrieve(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryCall:
                method = channel.unary_unary(
                    f"/{RETRIEVE_METHOD}",
                    request_serializer=storage_pb2.RetrieveObjectRequest.SerializeToString,
                    response_deserializer=storage_pb2.RetrieveObjectResponse.FromString,
                )
                return method(
                    storage_pb2.RetrieveObjectRequest(object_key="k"),
                    timeout=60,
                    metadata=(("x-vivified-target", "j2-slow"),),
                )

            in_flight = [retrieve(channels[i % 2]) for i in range(8)]
            await until(lambda: len(slow.calls) == 8, 15, "eight calls to reach the callee")
            for channel in channels:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await retrieve(channel)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                info = error_info(refused.value)
                assert (info.reason, info.metadata["rule_id"]) == ("CALL_LIMIT", "concurrency-calls")
            rows = [r for r in audit_rows(core, actor="plugin:j2-caller") if r.reason == "CALL_LIMIT"]
            assert [(r.decision, r.outcome, r.rule_id) for r in rows] == [
                ("deny", "RESOURCE_EXHAUSTED", "concurrency-calls")
            ] * 2

            for call in in_flight[:3]:
                call.cancel()
            # The gauge counts every principal's calls; a heartbeat of j2-slow may add one for a
            # moment, so wait for the caller's five uncancelled calls alone (6 may still be one
            # cancelled call holding its slot, and the third replacement would then be refused).
            await until(lambda: metric(core, "vivified_unary_calls_in_flight") <= 5, 10, "cancelled calls to end")
            replacements = [retrieve(channels[i % 2]) for i in range(3)]
            await until(lambda: len(slow.calls) == 11, 15, "three new calls to reach the callee")
            with pytest.raises(grpc.aio.AioRpcError) as full:
                await retrieve(channels[0])
            assert error_info(full.value).reason == "CALL_LIMIT"
            for call in in_flight[3:] + replacements:
                call.cancel()
        finally:
            for channel in channels:
                await channel.close()
            await target.stop("test over")
