"""`vivified bench storage` (docs/performance.md P10): object put and get
throughput for 1 MiB and 64 KiB objects against writing (temp file, fsync,
rename) and reading the same bytes as a plain file, interleaved round by
round in one run, on both backends.

The measured path is the real one: a `vivified core` process per backend
(`--storage-backend directory`, and `--storage-backend database` on SQLite in
its data dir or on `--database-url`), and a registered plugin identity putting
and getting through `ObjectStoreService` over mTLS with the SDK's storage
client — authentication, status gate, rate limit, policy, one audit record per
call, encryption, the backend's durable write. The store layer alone, in
process, is measured after it as a separate section (`--no-in-process` skips it)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import statistics
import sys
import tempfile

import grpc
from google.protobuf import json_format

from vivified.bench._platform import Platform, RunningCore
from vivified.bench._report import BenchReport
from vivified.bench._storage_local import SIZES, Run, file_paths, mib_s, run_in_process, seconds
from vivified.core.db import plain_engine, upgrade
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.sdk import ObjectStoreClient

STORER = "bench-object-storer"
SECTION = "through a core (gRPC, mTLS, chain, audit)"
PATHS = ("file_put", "core_put", "file_get", "core_get")


def _progress(text: str) -> None:
    print(f"bench storage: {text}", file=sys.stderr, flush=True)


async def _storer(core: RunningCore) -> grpc.aio.Channel:
    """The storer plugin approved and registered (hence active) with `core`."""
    manifest = json_format.ParseDict(
        {
            "id": STORER,
            "name": "bench object storer",
            "version": "0.1.0",
            "contracts": ["vivified.storage.v1.StoragePluginService"],
            "traits": ["storage_plugin"],
        },
        PluginManifest(),
    )
    for attempt in range(100):
        try:
            return await core.register(manifest)
        except grpc.aio.AioRpcError as err:
            # A core just started on a busy machine may refuse calls until its
            # registry view is first refreshed (REGISTRY_STALE); setup waits.
            if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == 99:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


def _core_paths(client: ObjectStoreClient, label: str, data: bytes) -> tuple[Run, Run]:
    async def put(i: int) -> None:
        await client.put(f"{label}/{i}", data, timeout=60)

    async def get(i: int) -> None:
        if len(await client.get(f"{label}/{i}", timeout=60)) != len(data):
            raise RuntimeError(f"object {label}/{i} came back short")

    return put, get


async def _through_cores(
    platform: Platform, directory: pathlib.Path, *, count: int, rounds: int, database_url: str | None
) -> tuple[list[dict[str, object]], dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    flags: dict[str, tuple[str, ...]] = {
        "directory": ("--storage-backend", "directory"),
        "database": ("--storage-backend", "database"),
    }
    if database_url:
        engine = plain_engine(database_url)
        try:
            upgrade(engine)  # as `vivified db upgrade` would; the core refuses an old schema
        finally:
            engine.dispose()
        flags["database"] += ("--database-url", database_url)
    clients: dict[str, ObjectStoreClient] = {}
    for backend, backend_flags in flags.items():
        _progress(f"starting a core with the {backend} backend")
        # The rate limit still runs on every call; its limit is set above what
        # this machine reaches so the run measures the store, not the limit.
        core = await platform.start_core(f"core-{backend}", env, "--call-rate", "1000000", *backend_flags)
        clients[backend] = ObjectStoreClient(platform.own(await _storer(core)))

    cases = [(backend, label, size) for backend in clients for label, size in SIZES.items()]
    paths: dict[tuple[str, str], dict[str, Run]] = {}
    for backend, label, size in cases:
        data = secrets.token_bytes(size)
        plain_put, plain_get = file_paths(directory, f"{backend}-{label}", data)
        core_put, core_get = _core_paths(clients[backend], label, data)
        paths[backend, label] = {
            "file_put": plain_put,
            "core_put": core_put,
            "file_get": plain_get,
            "core_get": core_get,
        }
        await core_put(0)  # warm the channel, the chain's caches and the backend
        await core_get(0)
    elapsed: dict[tuple[str, str], dict[str, list[float]]] = {case: {p: [] for p in PATHS} for case in paths}
    for n in range(rounds):
        for backend, label, _size in cases:
            _progress(f"round {n + 1}/{rounds}: {backend} backend, {label}, plain file and core put, then get")
            for name in PATHS:
                elapsed[backend, label][name].append(await seconds(count, paths[backend, label][name]))

    rows: list[dict[str, object]] = []
    ratios: dict[str, float] = {}
    for backend, label, size in cases:
        times = elapsed[backend, label]
        rate = {name: statistics.median(mib_s(count, size, t) for t in times[name]) for name in PATHS}
        for who in ("file", "core"):
            both = [2 * mib_s(count, size, p + g) for p, g in zip(times[f"{who}_put"], times[f"{who}_get"])]
            rate[f"{who}_put_get"] = statistics.median(both)
        rows.append(
            {
                "section": SECTION,
                "backend": backend,
                "size": label,
                "objects": count * rounds,
                **{f"{k}_mib_s": round(v, 1) for k, v in rate.items()},
            }
        )
        for op in ("put", "get", "put_get"):
            ratios[f"storage.{backend}.{label}.{op}"] = round(rate[f"core_{op}"] / rate[f"file_{op}"], 3)
    ratios["P10.throughput"] = ratios["storage.directory.1MiB.put_get"]
    ratios["P10.database_throughput"] = ratios["storage.database.1MiB.put_get"]
    return rows, ratios


async def run_storage_bench(
    *, count: int, rounds: int, database_url: str | None, in_process: bool = True
) -> BenchReport:
    report = BenchReport("storage")
    with tempfile.TemporaryDirectory(prefix="vivified-bench-storage-") as tmp:
        root = pathlib.Path(tmp)
        direct = root / "files"
        direct.mkdir()
        platform = Platform(root)
        try:
            rows, ratios = await _through_cores(platform, direct, count=count, rounds=rounds, database_url=database_url)
        finally:
            await platform.close()
        report.rows += rows
        report.ratios |= ratios
        if in_process:
            rows, ratios = await run_in_process(root, count=count, rounds=rounds, database_url=database_url)
            report.rows += rows
            report.ratios |= ratios
    return report
