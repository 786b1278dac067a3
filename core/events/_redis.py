"""The Redis Streams event store: what several core replicas share.

Layout (every key under `vivified:events:`):
- `stream:<type>`: one stream per event type; entry field `d` holds the envelope.
- `dedupe:<len>:<source>:<event id>`: the original entry id, expiring after the dedupe window.
- `sub:<name>`: the subscription's event types and its `lost` counter; `subscriptions`: every name.
- a consumer group named after the subscription on each of its type streams and
  on its own `replay:<name>` stream; `dead:<name>`: its dead letters.

Durability: an append is acknowledged after Redis has answered the XADD. That
is "durable" only when Redis runs with `appendonly yes` and `appendfsync always`
(Redis then fsyncs the AOF before it replies); with the default `everysec`, up
to a second of acknowledged events can be lost in a crash. Production must use
`appendfsync always`; the tests run Redis that way.

Ordering, per subscription:
- Within one event type (one stream), first deliveries come in append (XADD)
  order. Across event types there is no global order: a read takes from the
  subscription's streams in rotating order, so an older event of type A can be
  delivered after a newer one of type B.
- A redelivery (nack or ack timeout, claimed with XCLAIM) comes when due,
  before new entries, so after entries first delivered later.
- Competing consumers of one subscription split its entries; no order holds
  between what two consumers process.
- Replayed dead letters come through the subscription's replay stream.

Round trips: appends arriving while one is in flight are coalesced into the
next pipeline (one APPEND script call per chunk of a batch: dedupe check with
SET NX semantics and XADD, atomically); a read is one script call that claims
due entries (XPENDING IDLE + XCLAIM), dead-letters exhausted ones and takes new
entries (XREADGROUP COUNT) over all of the subscription's streams, then, when
nothing was there, one XREAD BLOCK from the group's last-delivered ids; acks
are one call with one multi-id XACK per stream.

Delivery ids encode `stream index/entry id/attempt`, the attempt being the
group's delivery count. An ack or nack applies only while that count is
unchanged, so a consumer whose entry was claimed by another (count
incremented) cannot acknowledge the other's in-flight work.

Caps: `trim()` removes entries below every group's oldest unacknowledged one
(XTRIM MINID), each subscription's dead letters beyond `max_dead_letters`
(XTRIM MAXLEN, oldest first), and consumers idle past the ack timeout with
nothing pending (a Subscribe stream's consumer is deleted when it ends, unless
it still holds entries). When a subscription's backlog exceeds `max_backlog`, its oldest
unacknowledged entries are trimmed out of their type streams; that loss is
counted for every subscription that had not acknowledged them, and an entry
trimmed while pending is delivered once more with `data=None`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from vivified.core.clock import Clock
from vivified.core.errors import FailedPrecondition
from vivified.core.events import _redis_lua as lua
from vivified.core.events._coalesce import AppendCoalescer
from vivified.core.events._config import EventsConfig
from vivified.core.events._guard import StoreGuard
from vivified.core.events._store import (
    Appended,
    DeadLetter,
    Delivery,
    NewEvent,
    SubscriptionLag,
    Trimmed,
    plugin_of,
    subscription_limit,
)

_PREFIX = "vivified:events:"
_ENTRY_ID = re.compile(r"^\d+-\d+$")
_REPLAY_INDEX = "r"
# Events per APPEND script call: bounds how long one call holds the Redis server.
_APPEND_CHUNK = 256
# Longest single XREAD wait: a blocked read re-runs its claim pass this often,
# which is how it notices deliveries another core let time out.
_POLL_SECONDS = 0.25
# A Redis that cannot take writes (out of memory, a read-only replica after a
# failover, still loading) is unavailable to the core, like one it cannot reach.
_log = logging.getLogger(__name__)

_FAILURES = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    OSError,
)


# The client is made with decode_responses=False, so every reply is bytes; redis-py types replies
# as bytes or str (decoding is chosen at run time), hence the casts to these shapes. XRANGE's
# reply is a list, empty for a missing stream (redis-py's type also allows None).
_StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def _missing(subscription: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"subscription {subscription!r} does not exist (never opened, or deleted); subscribe first",
        reason="SUBSCRIPTION_MISMATCH",
    )


def _describe(url: str) -> str:
    """host:port of the URL; never its credentials."""
    parts = urllib.parse.urlsplit(url)
    return f"redis at {parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisEventStore:
    """`EventStore` on Redis Streams (see the module docstring)."""

    def __init__(self, url: str, config: Callable[[], EventsConfig], clock: Clock) -> None:
        self._current = config
        self._clock = clock
        timeout = config().store_timeout_seconds
        # One immediate retry on a connection error: after a Redis restart every
        # pooled connection is stale once. A retried command is safe here: a
        # repeated append is deduplicated (within the window), a repeated read leaves entries pending
        # until their ack timeout. The guard bounds the total time either way.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=False,
            retry=Retry(NoBackoff(), 1),
        )
        self._where = _describe(url)
        self._guard = StoreGuard(clock, timeout, describe=self._where, failure_types=_FAILURES)
        self._scripts = {
            name: self._redis.register_script(getattr(lua, name))
            for name in (
                "APPEND",
                "SUBSCRIBE",
                "READ",
                "ACK",
                "NACK",
                "REPLAY",
                "LAG",
                "TRIM_SAFE",
                "FORCE_OUT",
                "DELETE",
                "RELEASE",
                "SWEEP",
            )
        }
        self._types: dict[str, list[str]] = {}
        self._rotation = itertools.count()
        # Blocked reads per subscription, woken by a local nack or replay (one
        # from another core is noticed by the read's next claim pass).
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._closed = False
        self._coalescer = AppendCoalescer(self._append_now, timeout)

    @property
    def _config(self) -> EventsConfig:
        # Read at each use: the runtime settings (ack timeout, attempts, dedupe
        # window, backlog cap) may change while the core runs.
        return self._current()

    # Keys -----------------------------------------------------------------

    @staticmethod
    def _stream(event_type: str) -> str:
        return f"{_PREFIX}stream:{event_type}"

    @staticmethod
    def _dedupe(event: NewEvent) -> str:
        return f"{_PREFIX}dedupe:{len(event.source)}:{event.source}:{event.event_id}"

    def _streams(self, subscription: str, types: list[str]) -> list[str]:
        return [self._stream(t) for t in types] + [f"{_PREFIX}replay:{subscription}"]

    # Lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        async def ping() -> None:
            await self._redis.ping()
            for script in self._scripts.values():
                await self._redis.script_load(script.script)

        await self._guard.run(ping)
        await self._check_durability()

    async def _check_durability(self) -> None:
        """Refuse a Redis that would lose acknowledged events (no append-only
        file, or evicting any key); warn when the AOF is not fsynced per write."""
        try:
            settings = {}
            for key in ("appendonly", "appendfsync", "maxmemory-policy"):
                reply = await self._guard.run(functools.partial(self._redis.config_get, key))
                value = next(iter(reply.values()), b"") if reply else b""
                settings[key] = value.decode() if isinstance(value, bytes) else str(value)
        except redis_errors.ResponseError:
            _log.warning("%s: CONFIG GET is not allowed; cannot check its durability settings", self._where)
            return
        if settings["appendonly"] != "yes" or settings["maxmemory-policy"].startswith("allkeys-"):
            raise FailedPrecondition(
                f"{self._where} would lose acknowledged events (appendonly={settings['appendonly']}, "
                f"maxmemory-policy={settings['maxmemory-policy']}); run it with appendonly yes, "
                "appendfsync always and maxmemory-policy noeviction",
                reason="EVENT_STORE_UNAVAILABLE",
                domain="vivified.events",
            )
        if settings["appendfsync"] != "always":
            _log.warning(
                "%s runs appendfsync %s: events acknowledged in the last second can be lost in a crash",
                self._where,
                settings["appendfsync"],
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()
        await self._coalescer.close()
        await self._redis.aclose()

    # Appends ----------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        if not events:
            return []
        return await self._guard.run(lambda: self._coalescer.append(events))

    async def _append_now(self, events: list[NewEvent]) -> list[Appended]:
        window_ms = int(self._config.dedupe_window_seconds * 1000)

        script = self._scripts["APPEND"]

        async def pipelined() -> list[Any]:
            # One round trip for the batch, and one atomic script call per chunk
            # (dedupe check + XADD for each event): far fewer commands to encode
            # than one call per event. EVALSHA directly: the library's
            # script-in-pipeline path adds a SCRIPT EXISTS round trip per batch.
            async with self._redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(events), _APPEND_CHUNK):
                    chunk = events[start : start + _APPEND_CHUNK]
                    keys = [key for event in chunk for key in (self._stream(event.event_type), self._dedupe(event))]
                    pipe.evalsha(script.sha, len(keys), *keys, window_ms, *(event.data for event in chunk))
                return [reply for replies in await pipe.execute() for reply in replies]

        async def appended() -> list[Any]:
            try:
                return await pipelined()
            except redis_errors.NoScriptError:
                # Redis restarted (scripts are not persisted): no call of the
                # batch ran, so load the script and send the batch again.
                await self._redis.script_load(script.script)
                return await pipelined()

        replies = await appended()
        return [Appended(position=entry_id.decode(), duplicate=bool(dup)) for dup, entry_id in replies]

    # Subscriptions ----------------------------------------------------------

    async def subscribe(self, subscription: str, event_types: Sequence[str]) -> None:
        wanted = sorted(set(event_types))
        canonical = json.dumps(wanted)
        keys = [f"{_PREFIX}sub:{subscription}", f"{_PREFIX}subscriptions", *self._streams(subscription, wanted)]
        status, existing = await self._guard.run(
            functools.partial(
                self._scripts["SUBSCRIBE"],
                keys=keys,
                args=[
                    canonical,
                    subscription,
                    f"{plugin_of(subscription)}/",
                    self._config.max_subscriptions_per_plugin,
                ],
            )
        )
        if status == -2:
            raise subscription_limit(subscription, self._config.max_subscriptions_per_plugin)
        if status == -1:
            raise FailedPrecondition(
                f"subscription {subscription!r} exists for event types {json.loads(existing)}, not {wanted}; "
                "use another subscription name or the same types",
                reason="SUBSCRIPTION_MISMATCH",
            )
        self._types[subscription] = wanted

    async def _subscription_types(self, subscription: str) -> list[str]:
        if subscription in self._types:
            return self._types[subscription]
        raw = await self._guard.run(lambda: self._redis.hget(f"{_PREFIX}sub:{subscription}", "types"))
        if raw is None:
            raise _missing(subscription)
        self._types[subscription] = json.loads(raw)
        return self._types[subscription]

    async def _scripted(self, subscription: str, name: str, keys: list[str], args: list[Any]) -> Any:
        """A script call on the subscription's groups. A group that is gone (the
        subscription was deleted, here or by another core) fails like a
        subscription that never existed."""
        try:
            return await self._guard.run(functools.partial(self._scripts[name], keys=keys, args=args))
        except redis_errors.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._types.pop(subscription, None)
            raise _missing(subscription) from None

    async def delete(self, subscription: str) -> bool:
        try:
            types = await self._subscription_types(subscription)
        except FailedPrecondition:
            return False
        streams = self._streams(subscription, types)
        keys = [
            f"{_PREFIX}sub:{subscription}",
            f"{_PREFIX}subscriptions",
            f"{_PREFIX}dead:{subscription}",
            streams[-1],
            *streams[:-1],
        ]
        delete = functools.partial(self._scripts["DELETE"], keys=keys, args=[subscription])
        deleted = bool(await self._guard.run(delete))
        self._types.pop(subscription, None)
        # Blocked reads of it run their claim pass at once and find it gone.
        self._wake(subscription)
        return deleted

    async def release(self, subscription: str, consumer: str) -> None:
        types = self._types.get(subscription)
        if types is None:
            return  # deleted meanwhile: its groups and consumers went with it
        await self._guard.run(
            functools.partial(
                self._scripts["RELEASE"], keys=self._streams(subscription, types), args=[subscription, consumer]
            )
        )

    # Deliveries -------------------------------------------------------------

    async def read(self, subscription: str, consumer: str, count: int, block_seconds: float) -> list[Delivery]:
        types = await self._subscription_types(subscription)
        if count < 1:
            return []
        streams = self._streams(subscription, types)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block_seconds, 0.0)
        ack_timeout_ms = int(self._config.ack_timeout_seconds * 1000)
        while True:
            # Registered before the claim pass, so a nack landing between the
            # pass and the wait still wakes this read.
            woken = asyncio.Event()
            waiters = self._waiters.setdefault(subscription, set())
            waiters.add(woken)
            try:
                now_ms = int(self._clock.now().timestamp() * 1000)
                args = [
                    subscription,
                    consumer,
                    count,
                    ack_timeout_ms,
                    self._config.max_attempts,
                    now_ms,
                    next(self._rotation),
                    *types,
                ]
                raw, last_ids = await self._scripted(
                    subscription, "READ", [f"{_PREFIX}dead:{subscription}", *streams], args
                )
                if raw:
                    return [self._delivery(types, entry) for entry in raw]
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closed:
                    return []
                await self._wait(streams, last_ids, min(remaining, _POLL_SECONDS), woken)
            finally:
                waiters.discard(woken)

    def _wake(self, subscription: str) -> None:
        for waiter in self._waiters.get(subscription, ()):
            waiter.set()

    async def _wait(self, streams: list[str], last_ids: list[bytes], seconds: float, woken: asyncio.Event) -> None:
        """Until an entry lands after the group's last-delivered id on any of
        the streams, a local nack, or `seconds` pass."""
        block = self._guard.run(
            functools.partial(
                self._redis.xread, dict(zip(streams, last_ids, strict=True)), count=1, block=max(int(seconds * 1000), 1)
            ),
            extra_seconds=seconds,
        )
        reader = asyncio.ensure_future(block)
        waker = asyncio.ensure_future(woken.wait())
        try:
            await asyncio.wait({reader, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, waker):
                task.cancel()
            await asyncio.gather(reader, waker, return_exceptions=True)
        failure = reader.exception() if reader.done() and not reader.cancelled() else None
        if failure is not None:
            raise failure

    def _delivery(self, types: list[str], entry: list[Any]) -> Delivery:
        index, entry_id, attempt, raw_fields = int(entry[0]) - 1, entry[1].decode(), int(entry[2]), entry[3]
        fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True)) if raw_fields else {}
        if index < len(types):
            event_type, marker = types[index], str(index)
        else:
            event_type, marker = (fields.get(b"t") or b"").decode(), _REPLAY_INDEX
        data = fields.get(b"d") if raw_fields else None
        return Delivery(delivery_id=f"{marker}/{entry_id}/{attempt}", event_type=event_type, attempt=attempt, data=data)

    def _targets(self, subscription: str, types: list[str], delivery_ids: Sequence[str]) -> tuple[list[str], list[Any]]:
        streams = self._streams(subscription, types)
        keys: list[str] = []
        args: list[Any] = []
        for value in delivery_ids:
            parts = value.split("/")
            # A malformed id cannot name a pending delivery: ignored like an unknown one.
            if len(parts) != 3 or not _ENTRY_ID.match(parts[1]) or not parts[2].isdigit():
                continue
            if parts[0] == _REPLAY_INDEX:
                keys.append(streams[-1])
            elif parts[0].isdigit() and int(parts[0]) < len(types):
                keys.append(streams[int(parts[0])])
            else:
                continue
            args += [parts[1], int(parts[2])]
        return keys, args

    async def ack(self, subscription: str, delivery_ids: Sequence[str]) -> int:
        types = await self._subscription_types(subscription)
        keys, args = self._targets(subscription, types, delivery_ids)
        if not keys:
            return 0
        return int(await self._scripted(subscription, "ACK", keys, [subscription, 0, *args]))

    async def nack(self, subscription: str, delivery_ids: Sequence[str]) -> None:
        types = await self._subscription_types(subscription)
        keys, args = self._targets(subscription, types, delivery_ids)
        if not keys:
            return
        idle_ms = int(self._config.ack_timeout_seconds * 1000)
        if await self._scripted(subscription, "NACK", keys, [subscription, idle_ms, *args]):
            self._wake(subscription)

    # Dead letters -----------------------------------------------------------

    async def dead_letters(self, subscription: str, limit: int) -> list[DeadLetter]:
        entries = cast(
            _StreamEntries,
            await self._guard.run(lambda: self._redis.xrange(f"{_PREFIX}dead:{subscription}", count=limit)),
        )
        return [
            DeadLetter(
                dead_letter_id=entry_id.decode(),
                subscription=subscription,
                event_type=fields[b"t"].decode(),
                position=fields[b"p"].decode(),
                attempts=int(fields[b"a"]),
                reason=fields[b"r"].decode(),
                dead_at_ms=int(fields[b"at"]),
                data=fields[b"d"],
            )
            for entry_id, fields in entries
        ]

    async def replay(self, subscription: str, dead_letter_ids: Sequence[str]) -> int:
        types = await self._subscription_types(subscription)
        wanted = [value for value in dead_letter_ids if _ENTRY_ID.match(value)]
        if dead_letter_ids and not wanted:
            return 0
        keys = [f"{_PREFIX}dead:{subscription}", self._streams(subscription, types)[-1]]
        replayed = int(await self._guard.run(functools.partial(self._scripts["REPLAY"], keys=keys, args=wanted)))
        if replayed:
            self._wake(subscription)
        return replayed

    # Backlog ----------------------------------------------------------------

    async def _subscriptions(self) -> dict[str, list[str]]:
        members = cast(set[bytes], await self._guard.run(lambda: self._redis.smembers(f"{_PREFIX}subscriptions")))
        names = sorted(n.decode() for n in members)
        return {name: await self._subscription_types(name) for name in names}

    async def lag(self) -> list[SubscriptionLag]:
        result = []
        for name, types in (await self._subscriptions()).items():
            pending, undelivered = await self._guard.run(
                functools.partial(self._scripts["LAG"], keys=self._streams(name, types), args=[name])
            )
            lost = await self._guard.run(functools.partial(self._redis.hget, f"{_PREFIX}sub:{name}", "lost"))
            result.append(SubscriptionLag(name, int(pending), int(undelivered), int(lost or 0)))
        return result

    async def trim(self) -> Trimmed:
        subscriptions = await self._subscriptions()
        lost: dict[str, int] = {}
        for entry in await self.lag():
            excess = entry.backlog - self._config.max_backlog
            if excess <= 0:
                continue
            flat = await self._guard.run(
                functools.partial(
                    self._scripts["FORCE_OUT"],
                    keys=self._streams(entry.subscription, subscriptions[entry.subscription]),
                    args=[entry.subscription, excess, f"{_PREFIX}sub:"],
                )
            )
            for name, n in zip(flat[::2], flat[1::2], strict=True):
                lost[name.decode()] = lost.get(name.decode(), 0) + int(n)
        streams = {self._stream(t) for types in subscriptions.values() for t in types}
        streams |= {f"{_PREFIX}replay:{name}" for name in subscriptions}
        # Type streams nobody subscribes to any more are trimmed too.
        streams |= await self._guard.run(lambda: self._scan(f"{_PREFIX}stream:*"))
        removed = 0
        for key in sorted(streams):
            removed += int(await self._guard.run(functools.partial(self._scripts["TRIM_SAFE"], keys=[key])))
        dropped: dict[str, int] = {}
        idle_ms = int(self._config.ack_timeout_seconds * 1000)
        for name, types in subscriptions.items():
            # Exact MAXLEN (not ~): the oldest dead letters beyond the cap go.
            trim_dead = functools.partial(
                self._redis.xtrim, f"{_PREFIX}dead:{name}", maxlen=self._config.max_dead_letters, approximate=False
            )
            if n := int(await self._guard.run(trim_dead)):
                dropped[name] = n
            sweep = functools.partial(self._scripts["SWEEP"], keys=self._streams(name, types), args=[name, idle_ms])
            await self._guard.run(sweep)
        return Trimmed(removed=removed, lost=lost, dead_letters_dropped=dropped)

    async def _scan(self, pattern: str) -> set[str]:
        return {key.decode() async for key in self._redis.scan_iter(match=pattern, count=1000)}
