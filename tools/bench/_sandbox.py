"""`vivified bench sandbox`: a brokered operator-lane call to the echo plugin
sandboxed (bubblewrap, the core dialling its Unix socket) against the same
call to the same plugin code unsandboxed over loopback TCP, both behind one
core, interleaved round by round in one run.

The core serves its ports also as Unix sockets (`--plugin-socket-dir`); the
sandboxed copy runs under `vivified up`'s supervisor with the sandbox `up`
uses, as a second plugin id (`example-echo-sandboxed`) so both copies are
registered at once. The caller reaches the core over TCP in both paths: the
difference measured is the core-to-plugin hop (and the plugin's own calls
to the core) over a Unix socket in a sandbox vs loopback TCP."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources

import grpc
from google.protobuf import json_format

from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.bench._platform import Platform
from vivified.bench._report import BenchReport
from vivified.communication.v1 import communication_pb2
from vivified.core.app import RunningCore as CoreAddresses
from vivified.core.cli._sandbox import Sandbox, locate_bwrap
from vivified.core.cli._supervisor import SupervisionConfig, Supervisor
from vivified.core.cli._up import PluginSpec
from vivified.core.config import CoreConfig
from vivified.core.manifest import load_manifest_file
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.manifest.v1.manifest_pb2 import PluginManifest

SEND = "vivified.communication.v1.CommunicationPluginService/SendMessage"
ECHO = "example-echo"
SANDBOXED = "example-echo-sandboxed"
TCP_PATH = "brokered Invoke, plugin over loopback TCP"
UNIX_PATH = "brokered Invoke, sandboxed plugin over its Unix socket"


def _progress(text: str) -> None:
    print(f"bench sandbox: {text}", file=sys.stderr, flush=True)


async def run_sandbox_bench(rounds: int = 5, calls: int = 200) -> BenchReport:
    bwrap, reason = locate_bwrap()
    if bwrap is None or reason is not None:
        raise RuntimeError(f"cannot sandbox here: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        sockets = pathlib.Path(tempfile.mkdtemp(prefix="vv-bench-"))
        platform = Platform(pathlib.Path(tmp))
        stop = asyncio.Event()
        try:
            return await _measure(platform, bwrap, sockets, stop, rounds, calls)
        finally:
            stop.set()
            await platform.close()
            shutil.rmtree(sockets, ignore_errors=True)


async def _healthy_endpoint(admin: object, plugin_id: str) -> str:
    for _ in range(600):
        listed = await admin.ListPlugins(admin_pb.ListPluginsRequest())  # type: ignore[attr-defined]
        plugin = next((p for p in listed.plugins if p.plugin_id == plugin_id), None)
        if plugin and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY:
            return str(plugin.endpoint)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{plugin_id} did not become healthy")


async def _measure(
    platform: Platform, bwrap: str, sockets: pathlib.Path, stop: asyncio.Event, rounds: int, calls: int
) -> BenchReport:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    _progress("starting a core that also serves Unix sockets")
    core = await platform.start_core("data", env, "--call-rate", "1000000", "--plugin-socket-dir", str(sockets))
    addresses = CoreAddresses(**json.loads((core.data / "run" / "core.json").read_text()))
    packaged = pathlib.Path(str(resources.files("vivified.plugins").joinpath("example_echo/manifest.yaml")))
    echo = load_manifest_file(packaged)
    # The same code under a second id, for the sandboxed copy.
    manifests = platform.dir / "sandboxed"
    manifests.mkdir()
    copy = PluginManifest()
    copy.CopyFrom(echo)
    copy.id = SANDBOXED
    (manifests / "manifest.json").write_text(json_format.MessageToJson(copy, preserving_proto_field_name=True))
    spec = PluginSpec(module="vivified.plugins.example_echo", manifest=manifests / "manifest.json")
    supervisor = Supervisor(
        CoreConfig(data_dir=core.data),
        addresses,
        env,
        supervision=SupervisionConfig(crash_loop_crashes=1),
        output=lambda *_: None,
        sandbox=Sandbox(bwrap=bwrap, data_dir=core.data, socket_dir=sockets),
    )
    spec_tcp = PluginSpec(module="vivified.plugins.example_echo", manifest=packaged)
    plain = Supervisor(
        CoreConfig(data_dir=core.data),
        addresses,
        env,
        supervision=SupervisionConfig(crash_loop_crashes=1),
        output=lambda *_: None,
    )
    _progress("starting the echo plugin over TCP and its sandboxed copy")
    tasks = [asyncio.create_task(s.supervise(p, stop)) for s, p in ((supervisor, spec), (plain, spec_tcp))]
    endpoints = {pid: await _healthy_endpoint(core.admin, pid) for pid in (ECHO, SANDBOXED)}
    if not endpoints[SANDBOXED].startswith("unix:") or endpoints[ECHO].startswith("unix:"):
        raise RuntimeError(f"unexpected endpoints {endpoints}")

    caller = json_format.ParseDict(
        {
            "id": "bench-caller",
            "name": "bench caller",
            "version": "0.1.0",
            "contracts": ["vivified.storage.v1.StoragePluginService"],
            "traits": ["storage_plugin"],
            "calls": [{"plugin_id": ECHO, "method": SEND}, {"plugin_id": SANDBOXED, "method": SEND}],
        },
        PluginManifest(),
    )
    channel = await core.register(caller)
    gateway = gateway_pb2_grpc.OperatorGatewayServiceStub(channel)
    message = communication_pb2.SendMessageRequest(
        message=communication_pb2.CanonicalMessage(
            message_id="bench", to_address="a@example.com", subject="s", content="x" * 200
        )
    )
    requests = {}
    for path, target in ((TCP_PATH, ECHO), (UNIX_PATH, SANDBOXED)):
        request = gateway_pb2.InvokeRequest(target_plugin_id=target, method=SEND)
        request.payload.Pack(message)
        requests[path] = request
    latencies: dict[str, list[float]] = {path: [] for path in requests}
    for request in requests.values():
        for _ in range(20):  # warm connections and caches
            await gateway.Invoke(request)
    for n in range(rounds):
        for path, request in requests.items():
            _progress(f"round {n + 1} of {rounds}: {path}")
            for _ in range(calls):
                started = time.perf_counter()
                await gateway.Invoke(request)
                latencies[path].append(time.perf_counter() - started)
    await channel.close()
    stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    except (TimeoutError, grpc.aio.AioRpcError):
        pass

    report = BenchReport("sandbox")
    for path, samples in latencies.items():
        report.rows.append(
            {
                "path": path,
                "p50_ms": round(statistics.median(samples) * 1000, 3),
                "p99_ms": round(statistics.quantiles(samples, n=100)[98] * 1000, 3),
            }
        )
    report.ratios["sandbox_unix_vs_tcp.latency_p50"] = round(
        statistics.median(latencies[UNIX_PATH]) / statistics.median(latencies[TCP_PATH]), 3
    )
    return report
