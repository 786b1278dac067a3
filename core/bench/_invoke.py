"""`vivified bench invoke` (PERFORMANCE.md P1): a brokered operator-lane call
— mTLS, authentication, status gate, rate limit, policy, audit, forwarding —
against a direct mTLS call from the same client to the same plugin,
interleaved round by round in one run.

It starts a real core and the example echo plugin as processes on loopback,
registers a caller identity, and mints a core-identity client certificate
(the plugin accepts no other caller) for the direct baseline."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import resources

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from google.protobuf import json_format
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.communication.v1 import communication_pb2, communication_pb2_grpc
from vivified.core.bench._report import BenchReport
from vivified.core.ca import CAConfig, CertificateAuthority, new_private_key
from vivified.core.clock import SystemClock
from vivified.core.manifest import load_manifest_file
from vivified.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.registry.v1 import registry_pb2, registry_pb2_grpc

SEND = "vivified.communication.v1.CommunicationPluginService/SendMessage"
Call = Callable[[], Awaitable[object]]


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _creds(root: bytes, key: bytes, chain: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root, key, chain)


async def _wait_for(path: pathlib.Path, process: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        if path.exists():
            return dict(json.loads(path.read_text()))
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{path} did not appear within {timeout}s")


async def _latency(call: Call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def _throughput(call: Call, concurrency: int, per_worker: int) -> float:
    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return concurrency * per_worker / (time.perf_counter() - started)


class _Platform:
    """A core and the example echo plugin as processes, stopped by pid."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{len(self.processes)}.log", "wb")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def run_invoke_bench(rounds: int = 5, latency_calls: int = 200, concurrency: int = 64,
                           per_worker: int = 20) -> BenchReport:
    with tempfile.TemporaryDirectory() as tmp:
        platform = _Platform(pathlib.Path(tmp))
        try:
            return await _measure(platform, rounds, latency_calls, concurrency, per_worker)
        finally:
            platform.stop()


async def _measure(platform: _Platform, rounds: int, latency_calls: int, concurrency: int,
                   per_worker: int) -> BenchReport:
    data = platform.dir / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    core = platform.spawn(
        [sys.executable, "-m", "vivified.core.cli", "core", "--data-dir", str(data), "--listen", "127.0.0.1:0",
         "--bootstrap", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], env,
    )
    info = await _wait_for(data / "run" / "core.json", core, 60)
    operator = data / "operator"
    root = (operator / "ca.crt").read_bytes()
    override = [("grpc.ssl_target_name_override", f"core.{info['trust_domain']}")]
    op_channel = grpc.aio.secure_channel(
        info["listen_address"],
        _creds(root, (operator / "operator.key").read_bytes(), (operator / "operator.crt").read_bytes()),
        options=override,
    )
    admin = admin_grpc.PluginAdminServiceStub(op_channel)
    echo_manifest = pathlib.Path(str(resources.files("vivified.plugins").joinpath("example_echo/manifest.yaml")))
    echo = load_manifest_file(echo_manifest)
    token = (await admin.ApprovePlugin(admin_pb.ApprovePluginRequest(manifest=echo, replace=True))).join_token
    platform.spawn(
        [sys.executable, "-m", "vivified.plugins.example_echo"],
        {**env, "VIVIFIED_MANIFEST": str(echo_manifest), "VIVIFIED_JOIN_TOKEN": token,
         "VIVIFIED_CA_FILE": str(operator / "ca.crt"), "VIVIFIED_CORE_ADDRESS": info["listen_address"],
         "VIVIFIED_BOOTSTRAP_ADDRESS": info["bootstrap_address"]},
    )
    endpoint = ""
    for _ in range(300):
        listed = await admin.ListPlugins(admin_pb.ListPluginsRequest())
        plugin = next((p for p in listed.plugins if p.plugin_id == echo.id), None)
        if plugin and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY:
            endpoint = plugin.endpoint
            break
        await asyncio.sleep(0.1)
    if not endpoint:
        raise RuntimeError("the echo plugin did not become healthy")

    caller = json_format.ParseDict(
        {"id": "bench-caller", "name": "bench caller", "version": "0.1.0",
         "contracts": ["vivified.storage.v1.StoragePluginService"], "traits": ["storage_plugin"],
         "calls": [{"plugin_id": echo.id, "method": SEND}]}, PluginManifest())
    caller_token = (await admin.ApprovePlugin(admin_pb.ApprovePluginRequest(manifest=caller, replace=True))).join_token
    key = new_private_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench-caller")])).sign(key, hashes.SHA256())
    async with grpc.aio.secure_channel(info["bootstrap_address"], grpc.ssl_channel_credentials(root),
                                       options=override) as boot:
        registered = await registry_pb2_grpc.PluginRegistryServiceStub(boot).Register(registry_pb2.RegisterRequest(
            manifest=caller, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(), join_token=caller_token,
            endpoint="127.0.0.1:9"))
    brokered = grpc.aio.secure_channel(
        info["listen_address"], _creds(root, _pem(key), registered.certificate_chain_pem.encode()), options=override)
    ca = CertificateAuthority.load_or_create(data / "ca", CAConfig(trust_domain=info["trust_domain"]), SystemClock())
    core_key = new_private_key()
    direct = grpc.aio.secure_channel(
        endpoint, _creds(root, _pem(core_key), ca.issue_core_certificate(core_key).chain_pem),
        options=[("grpc.ssl_target_name_override", f"{echo.id}.plugin.{info['trust_domain']}")])

    request = communication_pb2.SendMessageRequest(message=communication_pb2.CanonicalMessage(
        message_id="bench", to_address="a@example.com", subject="s", content="x" * 200))
    invoke_request = gateway_pb2.InvokeRequest(target_plugin_id=echo.id, method=SEND)
    invoke_request.payload.Pack(request)
    direct_stub = communication_pb2_grpc.CommunicationPluginServiceStub(direct)
    typed_stub = communication_pb2_grpc.CommunicationPluginServiceStub(brokered)
    gateway = gateway_pb2_grpc.OperatorGatewayServiceStub(brokered)
    target_md = (("x-vivified-target", echo.id),)
    paths: dict[str, Call] = {
        "direct mTLS to plugin": lambda: direct_stub.SendMessage(request),
        "brokered Invoke": lambda: gateway.Invoke(invoke_request),
        "brokered typed call": lambda: typed_stub.SendMessage(request, metadata=target_md),
    }
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for call in paths.values():
        await _latency(call, 20)  # warm connections and caches
    for _ in range(rounds):
        for name, call in paths.items():
            latencies[name].extend(await _latency(call, latency_calls))
            rates[name].append(await _throughput(call, concurrency, per_worker))
    for channel in (op_channel, brokered, direct):
        await channel.close()

    report = BenchReport("invoke")
    for name in paths:
        report.rows.append({
            "path": name,
            "p50_ms": round(statistics.median(latencies[name]) * 1000, 3),
            "p99_ms": round(statistics.quantiles(latencies[name], n=100)[98] * 1000, 3),
            f"calls_per_s_c{concurrency}": round(statistics.median(rates[name])),
        })
    base_p50 = statistics.median(latencies["direct mTLS to plugin"])
    base_rate = statistics.median(rates["direct mTLS to plugin"])
    report.ratios["P1.latency_p50"] = round(statistics.median(latencies["brokered Invoke"]) / base_p50, 3)
    report.ratios["P1.throughput"] = round(statistics.median(rates["brokered Invoke"]) / base_rate, 3)
    report.ratios["P1.typed_latency_p50"] = round(statistics.median(latencies["brokered typed call"]) / base_p50, 3)
    report.ratios["P1.typed_throughput"] = round(statistics.median(rates["brokered typed call"]) / base_rate, 3)
    return report
