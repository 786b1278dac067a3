"""The event-bus paths `vivified bench events` times, each as plugins use it
through the SDK: a streamed publish (`PublishStream`), unary `Publish` calls
from concurrent callers, a paced publish timed to the subscriber's handler,
a streamed publish fanned out to subscriptions that ack every delivery, and
(the P12 baseline) redis-py alone pipelining XADDs of the same envelopes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import grpc
import redis.asyncio as aioredis
from google.protobuf.message import Message

from vivified.events.v1 import events_pb2, events_pb2_grpc
from vivified.sdk import PublishStream, ReceivedEvent, envelope

MakeEvent = Callable[[int], Message]
# Below the core's per-connection stream limit (256): a paced publisher that
# outruns the core waits instead of having its calls refused.
MAX_IN_FLIGHT = 128
PIPELINE = 100  # XADDs per redis-py pipeline in the P12 baseline (docs/performance.md's "pipelined ×100")


def event_ids(prefix: str, n: int) -> list[str]:
    """Ids for one measurement; a prefix unique in the run makes every event new to the dedupe check."""
    return [f"{prefix}-{i}" for i in range(n)]


class Inbox:
    """A subscription handler that notes when each event arrived and counts them."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self._target = 0
        self._reached = asyncio.Event()

    async def __call__(self, payload: Message, event: ReceivedEvent) -> None:
        self.arrived[event.event.event_id] = time.perf_counter()
        self.count += 1
        if self.count >= self._target:
            self._reached.set()

    async def reach(self, target: int, timeout: float) -> None:
        """Wait until `target` deliveries in all have arrived."""
        self._target = target
        self._reached.clear()
        if self.count < target:
            try:
                await asyncio.wait_for(self._reached.wait(), timeout)
            except TimeoutError:
                raise RuntimeError(f"only {self.count} of {target} deliveries arrived within {timeout:.0f}s") from None


async def streamed_publish(channel: grpc.aio.Channel, make: MakeEvent, ids: Sequence[str]) -> float:
    """Events per second through one PublishStream, every ack awaited."""
    started = time.perf_counter()
    async with PublishStream(channel) as stream:
        for i, event_id in enumerate(ids):
            stream.send(make(i), event_id=event_id)
    return len(ids) / (time.perf_counter() - started)


async def unary_publish(
    stub: events_pb2_grpc.EventBusServiceAsyncStub, make: MakeEvent, ids: Sequence[str], concurrency: int
) -> float:
    """Events per second from `concurrency` callers, each awaiting its Publish before the next."""
    requests = iter([events_pb2.PublishRequest(event=envelope(make(i), e)) for i, e in enumerate(ids)])

    async def caller() -> None:
        for request in requests:
            await stub.Publish(request)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return len(ids) / (time.perf_counter() - started)


async def paced_publish(
    stub: events_pb2_grpc.EventBusServiceAsyncStub, make: MakeEvent, ids: Sequence[str], rate: float, inbox: Inbox
) -> tuple[list[float], list[float], float]:
    """Unary publishes started on a fixed schedule of `rate` per second (a slow
    ack does not delay the next start, unless `MAX_IN_FLIGHT` are unanswered:
    then the core is saturated and the schedule slips). Returns the publish-ack
    and the end-to-end (publish start → subscriber handler) latencies in
    seconds, all read from this process's clock, and the start rate achieved."""
    loop = asyncio.get_running_loop()
    started: dict[str, float] = {}
    acks: list[float] = []
    before = inbox.count
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def publish(i: int, event_id: str) -> None:
        request = events_pb2.PublishRequest(event=envelope(make(i), event_id))
        started[event_id] = time.perf_counter()
        try:
            await stub.Publish(request)
        finally:
            slots.release()
        acks.append(time.perf_counter() - started[event_id])

    origin = loop.time()
    tasks = []
    for i, event_id in enumerate(ids):
        delay = origin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.ensure_future(publish(i, event_id)))
    achieved = (len(ids) - 1) / max(loop.time() - origin, 1e-9)
    await asyncio.gather(*tasks)
    await inbox.reach(before + len(ids), 30 + len(ids) / 100)
    return acks, [inbox.arrived[e] - started[e] for e in ids], achieved


async def fan_out(channel: grpc.aio.Channel, make: MakeEvent, ids: Sequence[str], inboxes: Sequence[Inbox]) -> float:
    """Deliveries per second, summed over `inboxes` (one subscription each,
    every event to every one), from the first publish to the last delivery."""
    targets = [inbox.count + len(ids) for inbox in inboxes]
    started = time.perf_counter()
    await streamed_publish(channel, make, ids)
    timeout = 30 + len(ids) / 100
    await asyncio.gather(*(inbox.reach(target, timeout) for inbox, target in zip(inboxes, targets, strict=True)))
    return len(ids) * len(inboxes) / (time.perf_counter() - started)


async def redis_pipelined(url: str, make: MakeEvent, ids: Sequence[str]) -> float:
    """Events per second of redis-py alone XADDing the serialised envelopes
    the streamed publish sends, `PIPELINE` per pipeline, each pipeline awaited,
    to one stream of the same server (the P12 baseline)."""
    blobs = [envelope(make(i), e).SerializeToString() for i, e in enumerate(ids)]
    client = aioredis.from_url(url)
    try:
        await client.ping()
        started = time.perf_counter()
        for start in range(0, len(blobs), PIPELINE):
            async with client.pipeline(transaction=False) as pipe:
                for blob in blobs[start : start + PIPELINE]:
                    pipe.xadd("bench:redis-py", {"e": blob})
                await pipe.execute()
        rate = len(blobs) / (time.perf_counter() - started)
        await client.delete("bench:redis-py")
        return rate
    finally:
        await client.aclose()
