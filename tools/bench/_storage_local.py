"""`vivified bench storage`: the object store's put and get throughput for
1 MiB and 64 KiB objects against writing (temp file, fsync, rename) and
reading the same bytes as a plain file, interleaved round by round in one run.

In process, on each backend: the store layer the core serves
(`vivified.core.storage.ObjectStore`: checks, AES-256-GCM under a fresh data
key per object, the data key wrapped by the keyring, the backend's atomic
write) over the directory backend and the database backend (SQLite in a
temporary directory, or `--database-url`). The gRPC hop and the chain are not
in these figures (`bench invoke` measures that hop)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from vivified.bench._report import BenchReport
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


def _direct_put(directory: pathlib.Path, name: str, data: bytes) -> None:
    tmp, final = directory / f".{name}.tmp", directory / name
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def _rate(count: int, size: int, run: Callable[[int], Awaitable[None]]) -> float:
    """MiB/s of `count` awaited calls of `run(i)`."""
    started = time.perf_counter()
    for i in range(count):
        await run(i)
    return count * size / (1024 * 1024) / (time.perf_counter() - started)


async def _measure(
    store: ObjectStore, directory: pathlib.Path, label: str, size: int, count: int, rounds: int
) -> dict[str, float]:
    data = secrets.token_bytes(size)

    def header(i: int) -> PutHeader:
        return PutHeader(
            f"{label}/{i}", "application/octet-stream", size, options_pb2.CLASSIFICATION_INTERNAL, None, ()
        )

    totals = {"store_put": 0.0, "file_put": 0.0, "store_get": 0.0, "file_get": 0.0}
    for round_ in range(rounds):

        async def store_put(i: int) -> None:
            await store.put(ACTOR, header(i), _chunks(data))

        async def file_put(i: int) -> None:
            await asyncio.to_thread(_direct_put, directory, f"{label}-{i}", data)

        async def store_get(i: int) -> None:
            found = await store.find(ACTOR, f"{label}/{i}")
            async for _part in store.read(found):
                pass

        async def file_get(i: int) -> None:
            await asyncio.to_thread((directory / f"{label}-{i}").read_bytes)

        totals["store_put"] += await _rate(count, size, store_put)
        totals["file_put"] += await _rate(count, size, file_put)
        totals["store_get"] += await _rate(count, size, store_get)
        totals["file_get"] += await _rate(count, size, file_get)
        print(f"  {label}: round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {k: v / rounds for k, v in totals.items()}


async def run_storage_bench(*, count: int, rounds: int, database_url: str | None) -> BenchReport:
    report = BenchReport("storage")
    keyring = SecretsKeyring([secrets.token_bytes(32)])
    limits = StorageLimits(max_object_bytes=2 * 1024 * 1024, quota_bytes=1 << 40)
    with tempfile.TemporaryDirectory(prefix="vivified-bench-storage-") as tmp:
        root = pathlib.Path(tmp)
        engine = create_engine_for(database_url or sqlite_url(root / "bench.db"))
        upgrade(engine)
        backends: dict[str, ObjectBackend] = {
            "directory": DirectoryBackend(root / "objects"),
            "database": DatabaseBackend(engine),
        }
        direct = root / "direct"
        direct.mkdir()
        try:
            for backend_name, backend in backends.items():
                store = ObjectStore(backend, keyring, SystemClock(), limits=limits, share_allowed=lambda _o, _r: False)
                for label, size in SIZES.items():
                    print(f"storage bench: {backend_name} backend, {label} objects", file=sys.stderr, flush=True)
                    rates = await _measure(store, direct, f"{backend_name}-{label}", size, count, rounds)
                    report.rows.append(
                        {
                            "backend": backend_name,
                            "size": label,
                            **{f"{k}_mib_s": round(v, 1) for k, v in rates.items()},
                        }
                    )
                    report.ratios[f"storage.{backend_name}.{label}.put"] = rates["store_put"] / rates["file_put"]
                    report.ratios[f"storage.{backend_name}.{label}.get"] = rates["store_get"] / rates["file_get"]
        finally:
            engine.dispose()
    return report
