"""Crashes and pressure on the embedded event bus: a subscriber killed before
acking, the core killed during a streamed publish, a slow subscriber beside a
fast one (bounded backlog, alert before loss), and a publish flood."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
import urllib.request

import pytest

from support.clients import approve, audit_rows
from support.events import (
    SECURITY_ALERT,
    USER_CREATED,
    Inbox,
    event_manifest,
    event_plugin,
)
from support.processes import (
    CoreProcess,
    clean_env,
    core_running,
    spawn,
    start_core,
    stop_process,
)
from support.waiting import until
from vivified.events.v1.canonical_pb2 import SecurityAlert, UserCreated
from vivified.sdk import ResourceExhaustedError, VivifiedSDKError, load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

TESTS_ROOT = pathlib.Path(__file__).resolve().parents[2]


async def subscriber_process(core: CoreProcess, directory: pathlib.Path, log: pathlib.Path, *, hang: bool) -> object:
    manifest = event_manifest(directory, "crash-sub", subscribes=[USER_CREATED])
    approval = await approve(core, load_manifest(manifest), replace=True)
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest),
        VIVIFIED_JOIN_TOKEN=approval.join_token,
        VIVIFIED_CA_FILE=str(core.operator_dir / "ca.crt"),
        VIVIFIED_CORE_ADDRESS=core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=core.bootstrap_address,
        EVENT_LOG=str(log),
        EVENT_HANG="1" if hang else "0",
        PYTHONPATH=os.pathsep.join([str(TESTS_ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    process = spawn([sys.executable, "-m", "support.event_plugin_main"], env, directory / "crash-sub.log")
    await until(lambda: log.exists() and "opened" in log.read_text(), 30, "the subscriber to open")
    return process


def deliveries(log: pathlib.Path) -> list[tuple[str, int]]:
    return [(line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines() if line != "opened"]


async def test_d1_subscriber_killed_before_ack_gets_the_event_again(tmp_path: pathlib.Path) -> None:
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--event-ack-timeout", "2") as core:
        publisher = await event_plugin(core, tmp_path, "crash-pub", publishes=[USER_CREATED])
        log = tmp_path / "deliveries.txt"
        first = await subscriber_process(core, tmp_path, log, hang=True)
        try:
            await publisher.publish(UserCreated(user_id="u"), event_id="kill-me")
            await until(lambda: deliveries(log) == [("kill-me", 1)], 10, "the first delivery")
            os.kill(first.pid, signal.SIGKILL)  # processed, never acked
            first.wait()
            second = await subscriber_process(core, tmp_path, log, hang=False)
            try:
                await until(lambda: ("kill-me", 2) in deliveries(log), 15, "the redelivery")
                assert deliveries(log) == [("kill-me", 1), ("kill-me", 2)]
            finally:
                stop_process(second)
        finally:
            stop_process(first)
            await publisher.stop()


async def test_core_killed_during_streamed_publish_loses_nothing_acknowledged(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    core = start_core(data_dir, "--heartbeat-interval", "1")
    acked: list[str] = []
    try:
        subscriber = await event_plugin(core, tmp_path, "kill-sub", subscribes=[USER_CREATED])
        await subscriber.subscribe("users", {UserCreated: Inbox()}).opened()
        await subscriber.stop()
        publisher = await event_plugin(core, tmp_path, "kill-pub", publishes=[USER_CREATED])
        stream = publisher.publish_stream()

        def collect(future: asyncio.Future) -> None:  # type: ignore[type-arg]
            if not future.cancelled() and future.exception() is None:
                acked.append(future.result().event_id)

        for index in range(3000):
            stream.send(UserCreated(user_id=str(index)), event_id=f"k-{index}").add_done_callback(collect)
            if index % 100 == 0:
                await asyncio.sleep(0)
        await until(lambda: len(acked) >= 300, 20, "some acknowledgements")
        os.kill(core.process.pid, signal.SIGKILL)
        core.process.wait()
        with pytest.raises(VivifiedSDKError):
            await stream.close()
        await publisher.stop()
    finally:
        stop_process(core.process)
    assert acked, "nothing was acknowledged before the kill"

    core = start_core(data_dir, "--heartbeat-interval", "1")
    try:
        inbox = Inbox()
        subscriber = await event_plugin(core, tmp_path, "kill-sub", subscribes=[USER_CREATED])
        await subscriber.subscribe("users", {UserCreated: inbox}).opened()
        await until(lambda: set(acked) <= set(inbox.event_ids()), 30, "every acknowledged event")
        received = inbox.event_ids()
        lost = set(acked) - set(received)
        duplicates = len(received) - len(set(received))
        assert lost == set() and duplicates == 0, (len(lost), duplicates)
        await subscriber.stop()
    finally:
        stop_process(core.process)


def metric(core: CoreProcess, name: str, label: str) -> float:
    text = urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_d6_slow_subscriber_is_capped_and_alerted_while_fast_subscriber_gets_everything(
    tmp_path: pathlib.Path,
) -> None:
    flags = ("--heartbeat-interval", "1", "--event-max-backlog", "600", "--event-ack-timeout", "60")
    with core_running(tmp_path / "data", *flags) as core:
        publisher = await event_plugin(core, tmp_path, "flood-pub", publishes=[USER_CREATED])
        fast = await event_plugin(core, tmp_path, "fast-sub", subscribes=[USER_CREATED])
        slow = await event_plugin(core, tmp_path, "slow-sub", subscribes=[USER_CREATED])
        watcher = await event_plugin(core, tmp_path, "alert-sub", subscribes=[SECURITY_ALERT])
        try:
            fast_inbox, alerts = Inbox(), Inbox()
            await fast.subscribe("users", {UserCreated: fast_inbox}).opened()
            await watcher.subscribe("alerts", {SecurityAlert: alerts}).opened()

            async def stuck(payload: object, event: object) -> None:
                await asyncio.Event().wait()  # a subscriber that never finishes: nothing acked

            await slow.subscribe("users", {UserCreated: stuck}).opened()
            ids = [f"f-{i}" for i in range(1000)]
            async with publisher.publish_stream() as stream:  # about 500 events/s
                for start in range(0, len(ids), 100):
                    for i in ids[start : start + 100]:
                        stream.send(UserCreated(user_id=i), event_id=i)
                    await asyncio.sleep(0.2)
            await until(lambda: len(fast_inbox.received) >= len(ids), 30, "the fast subscriber to get everything")
            assert fast_inbox.event_ids() == ids

            def kinds() -> list[str]:
                return [p.kind for p, _ in alerts.received]

            await until(lambda: "events_lost" in kinds(), 15, "the loss alert")
            assert kinds().index("event_backlog_high") < kinds().index("events_lost")
            high = next(p for p, _ in alerts.received if p.kind == "event_backlog_high")
            assert high.subject == "slow-sub/users" and high.details["cap"] == "600"
            actions = [r.action for r in audit_rows(core, actor="core:core") if r.action.startswith("event.alert")]
            assert actions.index("event.alert.event_backlog_high") < actions.index("event.alert.events_lost")
            await until(
                lambda: 0 < metric(core, "vivified_events_subscription_lag", 'subscription="slow-sub/users"') <= 600,
                10,
                "the slow subscription's backlog to be capped",
            )
            assert metric(core, "vivified_events_lost_total", 'subscription="slow-sub/users"') >= 400 - 64
            assert metric(core, "vivified_events_lost_total", 'subscription="fast-sub/users"') == 0
        finally:
            for runtime in (publisher, fast, slow, watcher):
                await runtime.stop()


async def test_j5_publish_flood_is_rate_limited_per_plugin_and_reconnecting_does_not_reset_it(
    tmp_path: pathlib.Path,
) -> None:
    with core_running(tmp_path / "data", "--heartbeat-interval", "1", "--event-publish-rate", "100") as core:
        flooder = await event_plugin(core, tmp_path, "flooder", publishes=[USER_CREATED])
        neighbour = await event_plugin(core, tmp_path, "neighbour", publishes=[USER_CREATED])
        try:
            stream = flooder.publish_stream()
            sent = [stream.send(UserCreated(user_id=str(i))) for i in range(2000)]
            with pytest.raises(ResourceExhaustedError) as caught:
                await stream.close()
            assert caught.value.reason == "RATE_LIMITED"
            accepted = sum(1 for f in sent if f.exception() is None)
            assert 150 <= accepted < 400  # burst 200 plus what refills while the stream runs
            refused = [f.exception() for f in sent if f.exception() is not None]
            assert all(isinstance(e, ResourceExhaustedError) and e.reason == "RATE_LIMITED" for e in refused)
            await neighbour.publish(UserCreated(user_id="unaffected"))
            # A new stream on a new connection still finds the bucket empty.
            await flooder.stop()
            flooder = await event_plugin(core, tmp_path, "flooder", publishes=[USER_CREATED])
            again = flooder.publish_stream()
            burst = [again.send(UserCreated(user_id=str(i))) for i in range(300)]
            with pytest.raises(ResourceExhaustedError):
                await again.close()
            accepted_again = sum(1 for f in burst if f.exception() is None)
            assert accepted_again < 250
            rows = [r for r in audit_rows(core, actor="plugin:flooder") if r.reason == "RATE_LIMITED"]
            assert len(rows) == len(refused) + len(burst) - accepted_again  # one deny record per refused event
            assert all(r.outcome == "RESOURCE_EXHAUSTED" and r.decision == "deny" for r in rows)
            # A unary publish over the limit is the same decision, recorded the same way.
            results: list[object] = []
            for _ in range(2):  # two waves under the 256 concurrent streams a connection may open
                results += await asyncio.gather(
                    *(flooder.publish(UserCreated(user_id=str(i))) for i in range(200)), return_exceptions=True
                )
            limited = [r for r in results if isinstance(r, ResourceExhaustedError)]
            others = [r for r in results if isinstance(r, Exception) and not isinstance(r, ResourceExhaustedError)]
            assert limited and not others, others[:3]
            unary = [r for r in audit_rows(core, actor="plugin:flooder") if r.action.endswith("/Publish")]
            denied = [(r.decision, r.reason, r.rule_id) for r in unary if r.outcome == "RESOURCE_EXHAUSTED"]
            assert denied == [("deny", "RATE_LIMITED", "event-publish-rate")] * len(limited)
        finally:
            await flooder.stop()
            await neighbour.stop()
