"""`vivified bench events` (docs/performance.md P3–P6): the event bus measured
side by side in one run.

It starts a core on the embedded store and, when redis-server is installed,
a Redis server (AOF, fsync on every write) and a second core on it; registers
a publisher and four subscriber plugins the way plugins register; and runs
the clients in this process through the SDK, so publish and delivery times
are read from one clock. Every round measures, interleaved:

- P3: one `PublishStream` vs unary `Publish` from concurrent callers (embedded);
- P5: the same streamed publish on the Redis core (vs P3's streamed figure);
- P6: a streamed publish delivered to one subscription vs to four (four
  plugins, each acking every delivery), counted from the first publish to the
  last delivery;
- P4: unary publishes paced at 500/s: publish-ack p50 vs publish → subscriber
  handler p50; P13: the end-to-end p99 vs p50 of the same paced run;
- P12: the streamed publish on the Redis core vs redis-py alone pipelining
  XADDs of the same envelopes (100 per pipeline) to the same server.

Each measurement uses its own event type, so no subscription ever holds a
backlog of another measurement's events. Payloads carry no classified field
(no per-delivery redaction audit); each published event is audited. The
cores run with the per-plugin publish rate and the per-principal call rate
raised far above what is measured, so the limiters are not what is timed."""

from __future__ import annotations

import asyncio
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf import json_format

from vivified.bench._event_paths import (
    PIPELINE,
    Inbox,
    event_ids,
    fan_out,
    paced_publish,
    redis_pipelined,
    streamed_publish,
    unary_publish,
)
from vivified.bench._platform import Platform, RunningCore
from vivified.bench._report import BenchReport
from vivified.events.v1 import events_pb2_grpc
from vivified.events.v1.canonical_pb2 import (
    EmailQueued,
    EmailSent,
    UserCreated,
    UserUpdated,
)
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.sdk import Subscription, envelope

LIMIT_FLAGS = ("--event-publish-rate", "1000000", "--call-rate", "1000000")
PACED_RATE = 500.0
PACED_EVENTS = 1000  # per round at most: 2 s at 500/s
FAN_OUT = 4
_STREAMED = "streamed publish (1 PublishStream, SDK window 1024)"
_LIMITS_NOTE = "publish rate and per-principal call rate raised to 1e6/s (--event-publish-rate, --call-rate)"


def _updated(i: int) -> UserUpdated:
    return UserUpdated(user_id=f"user-{i:08d}", changed_fields=["username"])


def _created(i: int) -> UserCreated:
    return UserCreated(user_id=f"user-{i:08d}", username="bench")


def _queued(i: int) -> EmailQueued:
    return EmailQueued(email_id=f"email-{i:08d}", template="welcome")


def _sent(i: int) -> EmailSent:  # the same size as _queued: the 1-vs-4 comparison moves equal bytes
    return EmailSent(email_id=f"email-{i:08d}", provider_message_id="welcome")


def _manifest(
    plugin_id: str, *, publishes: list[str] | None = None, subscribes: list[str] | None = None
) -> PluginManifest:
    return json_format.ParseDict(
        {
            "id": plugin_id,
            "name": plugin_id,
            "version": "0.1.0",
            "contracts": ["vivified.storage.v1.StoragePluginService"],
            "traits": ["storage_plugin"],
            "publishes": publishes or [],
            "subscribes": subscribes or [],
        },
        PluginManifest(),
    )


def _name(message: type[UserUpdated | UserCreated | EmailQueued | EmailSent]) -> str:
    return str(message.DESCRIPTOR.full_name)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a child process (Linux /proc), or None elsewhere."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Path:
    """Samples of one measured path over the rounds, and the CPU it cost."""

    rates: list[float]
    events: int = 0
    core_cpu: float = 0.0
    client_cpu: float = 0.0

    def cpu_columns(self) -> dict[str, float]:
        if not self.events:
            return {}
        return {
            "core_cpu_us_per_event": round(self.core_cpu / self.events * 1e6, 1),
            "client_cpu_us_per_event": round(self.client_cpu / self.events * 1e6, 1),
        }


@dataclass
class _Paced:
    """P4 samples over the rounds: publish-ack and end-to-end latencies, and start rates achieved."""

    acks: list[float]
    e2e: list[float]
    rates: list[float]


async def _timed(path: _Path, pid: int, events: int, run: Callable[[], Awaitable[float]]) -> None:
    core_before, client_before = _cpu_seconds(pid), time.process_time()
    path.rates.append(await run())
    core_after = _cpu_seconds(pid)
    if core_before is not None and core_after is not None:
        path.core_cpu += core_after - core_before
    path.client_cpu += time.process_time() - client_before
    path.events += events


async def run_events_bench(events: int = 2000, rounds: int = 5, concurrency: int = 32) -> BenchReport:
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(pathlib.Path(tmp))
        try:
            return await _measure(platform, events, rounds, concurrency)
        finally:
            await platform.close()


async def _measure(platform: Platform, n: int, rounds: int, concurrency: int) -> BenchReport:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    embedded = await platform.start_core("embedded", env, *LIMIT_FLAGS)
    redis_url = await platform.start_redis()
    redis_core = await platform.start_core("redis", env, *LIMIT_FLAGS, "--redis-url", redis_url) if redis_url else None
    channels: list[grpc.aio.Channel] = []
    subscriptions: list[Subscription] = []
    try:
        return await _rounds(embedded, redis_core, channels, subscriptions, n, rounds, concurrency, redis_url)
    finally:
        for subscription in subscriptions:
            await subscription.close()
        for channel in channels:
            await channel.close()


async def _register(core: RunningCore, channels: list[grpc.aio.Channel], manifest: PluginManifest) -> grpc.aio.Channel:
    channel = await core.register(manifest)
    channels.append(channel)
    return channel


async def _rounds(
    embedded: RunningCore,
    redis_core: RunningCore | None,
    channels: list[grpc.aio.Channel],
    subscriptions: list[Subscription],
    n: int,
    rounds: int,
    concurrency: int,
    redis_url: str | None = None,
) -> BenchReport:
    publishes = [_name(UserUpdated), _name(UserCreated), _name(EmailQueued), _name(EmailSent)]
    publisher = await _register(embedded, channels, _manifest("bench-publisher", publishes=publishes))
    first = [_name(UserCreated), _name(EmailQueued), _name(EmailSent)]
    subscribers = [
        await _register(
            embedded, channels, _manifest(f"bench-subscriber-{k}", subscribes=first if k == 1 else first[2:])
        )
        for k in range(1, FAN_OUT + 1)
    ]
    redis_publisher = (
        await _register(redis_core, channels, _manifest("bench-publisher", publishes=publishes)) if redis_core else None
    )
    latency, single = Inbox(), Inbox()
    fan = [Inbox() for _ in subscribers]

    def subscribe(
        channel: grpc.aio.Channel, name: str, message: type[UserCreated | EmailQueued | EmailSent], inbox: Inbox
    ) -> None:
        subscriptions.append(Subscription(lambda: channel, name, {message: inbox}))

    subscribe(subscribers[0], "latency", UserCreated, latency)
    subscribe(subscribers[0], "single", EmailQueued, single)
    for channel, inbox in zip(subscribers, fan, strict=True):
        subscribe(channel, "fanout", EmailSent, inbox)
    await asyncio.gather(*(s.opened() for s in subscriptions))

    stub = events_pb2_grpc.EventBusServiceStub(publisher)
    embedded_pid = embedded.pid
    redis_pid = redis_core.pid if redis_core else 0
    paths = {key: _Path([]) for key in ("stream", "unary", "redis", "redis-py", "single", "fanout")}
    paced = _Paced([], [], [])

    async def one_round(label: str, size: int, record: bool) -> None:
        def ids(kind: str, count: int = size) -> list[str]:
            return event_ids(f"{label}-{kind}", count)

        steps: list[tuple[str, int, int, Callable[[], Awaitable[float]]]] = [
            ("stream", embedded_pid, size, lambda: streamed_publish(publisher, _updated, ids("stream"))),
            ("unary", embedded_pid, size, lambda: unary_publish(stub, _updated, ids("unary"), concurrency)),
        ]
        if redis_publisher is not None:
            steps.append(("redis", redis_pid, size, lambda: streamed_publish(redis_publisher, _updated, ids("redis"))))
        if redis_publisher is not None and redis_url is not None:
            steps.append(("redis-py", redis_pid, size, lambda: redis_pipelined(redis_url, _updated, ids("redis-py"))))
        steps += [
            ("single", embedded_pid, size, lambda: fan_out(publisher, _queued, ids("single"), [single])),
            ("fanout", embedded_pid, size * FAN_OUT, lambda: fan_out(publisher, _sent, ids("fanout"), fan)),
        ]
        for key, core_pid, events, run in steps:
            print(f"bench events: round {label}: {key}", file=sys.stderr, flush=True)
            if record:
                await _timed(paths[key], core_pid, events, run)
            else:
                await run()
        acks, e2e, achieved = await paced_publish(
            stub, _created, ids("paced", min(size, PACED_EVENTS)), PACED_RATE, latency
        )
        if record:
            paced.acks.extend(acks)
            paced.e2e.extend(e2e)
            paced.rates.append(achieved)

    await one_round("warm", min(n, 200), record=False)  # connections, caches, SQLite pages
    for r in range(rounds):
        await one_round(f"r{r}", n, record=True)
    return _report(paths, paced, n, rounds, concurrency, redis_core is not None)


def _p(samples: list[float], q: int) -> float:
    return (
        round(statistics.quantiles(samples, n=100)[q - 1] * 1000, 3)
        if len(samples) > 1
        else round(samples[0] * 1000, 3)
    )


def _report(paths: dict[str, _Path], paced: _Paced, n: int, rounds: int, concurrency: int, redis: bool) -> BenchReport:
    report = BenchReport("events")
    report.rows.append(
        {
            "path": "setup",
            "events_per_round": n,
            "paced_events_per_round": min(n, PACED_EVENTS),
            "rounds": rounds,
            "limits": _LIMITS_NOTE,
            "envelope_bytes": len(envelope(_updated(0), "r0-stream-0").SerializeToString()),
        }
    )

    def throughput(key: str, path: str, backend: str, unit: str = "events_per_s") -> None:
        report.rows.append(
            {
                "path": path,
                "backend": backend,
                unit: round(statistics.median(paths[key].rates)),
                **paths[key].cpu_columns(),
            }
        )

    throughput("stream", _STREAMED, "embedded")
    throughput("unary", f"unary Publish ({concurrency} concurrent callers)", "embedded")
    if redis:
        throughput("redis", _STREAMED, "redis (AOF, appendfsync always)")
        throughput(
            "redis-py",
            f"redis-py alone, XADD pipelined ×{PIPELINE} (same envelopes, same server)",
            "redis (AOF, appendfsync always)",
        )
    else:
        report.rows.append(
            {
                "path": "P5 skipped",
                "note": "no redis-server on PATH; install it (apt-get install redis-server) to compare the Redis backend",
            }
        )
    throughput("single", "fan-out: streamed publish → 1 subscription", "embedded", "delivered_per_s")
    throughput(
        "fanout", f"fan-out: streamed publish → {FAN_OUT} subscriptions (4 plugins)", "embedded", "delivered_per_s"
    )
    achieved = round(statistics.median(paced.rates))
    pacing: dict[str, object] = {"target_per_s": PACED_RATE, "achieved_per_s": achieved}
    capacity = statistics.median(paths["unary"].rates)
    if capacity < PACED_RATE or achieved < 0.95 * PACED_RATE:  # latencies include queueing
        pacing["note"] = (
            f"the core is saturated: unary capacity in this run {capacity:.0f}/s without subscribers, "
            f"schedule kept at {pacing['achieved_per_s']}/s"
        )
    report.rows.append(
        {
            "path": "publish ack, unary Publish paced",
            "backend": "embedded",
            **pacing,
            "p50_ms": _p(paced.acks, 50),
            "p99_ms": _p(paced.acks, 99),
        }
    )
    report.rows.append(
        {
            "path": "end to end publish → subscriber handler, unary Publish paced",
            "backend": "embedded",
            **pacing,
            "p50_ms": _p(paced.e2e, 50),
            "p99_ms": _p(paced.e2e, 99),
        }
    )

    def median(key: str) -> float:
        return statistics.median(paths[key].rates)

    report.ratios["P3.throughput"] = round(median("stream") / median("unary"), 3)
    report.ratios["P4.latency_p50"] = round(statistics.median(paced.e2e) / statistics.median(paced.acks), 3)
    if redis:
        report.ratios["P5.throughput"] = round(median("redis") / median("stream"), 3)
        report.ratios["P12.throughput"] = round(median("redis") / median("redis-py"), 3)
    report.ratios["P6.throughput"] = round(median("fanout") / median("single"), 3)
    report.ratios["P13.tail"] = (
        round(statistics.quantiles(paced.e2e, n=100)[98] / statistics.median(paced.e2e), 3)
        if len(paced.e2e) > 1
        else 1.0
    )
    return report
