"""The plain-file baseline of `vivified bench storage`, and the store layer
measured in process (no core, no gRPC, no chain) beside it.

In process, on each backend: `vivified.core.storage.ObjectStore` — checks,
AES-256-GCM under a fresh data key per object, the data key wrapped by the
keyring, the backend's atomic write — over the directory backend and the
database backend (SQLite in a temporary directory, or `--database-url`)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url, upgrade
from vivified.core.plugin_config import SecretsKeyring
from vivified.core.storage import (
    Actor,
    DatabaseBackend,
    DirectoryBackend,
    ObjectBackend,
    ObjectStore,
    PutHeader,
    StorageLimits,
)
from vivified.options.v1 import options_pb2

SIZES = {"1MiB": 1024 * 1024, "64KiB": 64 * 1024}
ACTOR = Actor("bench-storer", frozenset(), frozenset(), frozenset())
CHUNK = 256 * 1024
Run = Callable[[int], Awaitable[object]]


def file_put(directory: pathlib.Path, name: str, data: bytes) -> None:
    """What the directory backend does for one object, and nothing else:
    temp file, write, fsync, rename."""
    tmp, final = directory / f".{name}.tmp", directory / name
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def file_paths(directory: pathlib.Path, label: str, data: bytes) -> tuple[Run, Run]:
    """(put, get) of object i as a plain file, off the event loop like the store's I/O."""

    async def put(i: int) -> None:
        await asyncio.to_thread(file_put, directory, f"{label}-{i}", data)

    async def get(i: int) -> None:
        await asyncio.to_thread((directory / f"{label}-{i}").read_bytes)

    return put, get


async def seconds(count: int, run: Run) -> float:
    """Wall time of `count` awaited calls of `run(i)`, one at a time."""
    started = time.perf_counter()
    for i in range(count):
        await run(i)
    return time.perf_counter() - started


def mib_s(count: int, size: int, elapsed: float) -> float:
    return count * size / (1024 * 1024) / elapsed


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def _measure(
    store: ObjectStore, directory: pathlib.Path, label: str, size: int, count: int, rounds: int
) -> dict[str, float]:
    data = secrets.token_bytes(size)

    async def store_put(i: int) -> None:
        header = PutHeader(
            f"{label}/{i}", "application/octet-stream", size, options_pb2.CLASSIFICATION_INTERNAL, None, ()
        )
        await store.put(ACTOR, header, _chunks(data))

    async def store_get(i: int) -> None:
        found = await store.find(ACTOR, f"{label}/{i}")
        async for _part in store.read(found):
            pass

    plain_put, plain_get = file_paths(directory, label, data)
    paths = {"store_put": store_put, "file_put": plain_put, "store_get": store_get, "file_get": plain_get}
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(rounds):
        for name, run in paths.items():
            rates[name].append(mib_s(count, size, await seconds(count, run)))
        print(f"  in process {label}: round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


async def run_in_process(
    root: pathlib.Path, *, count: int, rounds: int, database_url: str | None
) -> tuple[list[dict[str, object]], dict[str, float]]:
    """Rows and ratios (`storage.in_process.<backend>.<size>.put|get`) of the
    store layer alone against the plain file, both backends."""
    rows: list[dict[str, object]] = []
    ratios: dict[str, float] = {}
    keyring = SecretsKeyring([secrets.token_bytes(32)])
    limits = StorageLimits(max_object_bytes=2 * 1024 * 1024, quota_bytes=1 << 40)
    engine = create_engine_for(database_url or sqlite_url(root / "in-process.db"))
    upgrade(engine)
    backends: dict[str, ObjectBackend] = {
        "directory": DirectoryBackend(root / "in-process-objects"),
        "database": DatabaseBackend(engine),
    }
    direct = root / "in-process-files"
    direct.mkdir()
    try:
        for backend_name, backend in backends.items():
            store = ObjectStore(backend, keyring, SystemClock(), limits=limits, share_allowed=lambda _o, _r: False)
            for label, size in SIZES.items():
                print(f"bench storage: in process, {backend_name} backend, {label}", file=sys.stderr, flush=True)
                rates = await _measure(store, direct, f"{backend_name}-{label}", size, count, rounds)
                rows.append(
                    {
                        "section": "in process (store layer only)",
                        "backend": backend_name,
                        "size": label,
                        **{f"{k}_mib_s": round(v, 1) for k, v in rates.items()},
                    }
                )
                key = f"storage.in_process.{backend_name}.{label}"
                ratios[f"{key}.put"] = round(rates["store_put"] / rates["file_put"], 3)
                ratios[f"{key}.get"] = round(rates["store_get"] / rates["file_get"], 3)
    finally:
        engine.dispose()
    return rows, ratios
