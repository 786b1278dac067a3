"""REST bridge vs direct gRPC: p50 latency of ListPlugins, one run.

Starts a core and the REST bridge's Envoy (as `vivified rest config`
generates it) on loopback in a temporary data dir, signs an admin in (TOTP
enrolment included), then times N sequential ListPlugins calls each way on
one kept-alive connection: gRPC straight to the bootstrap port with the
bearer token, and GET /v1/plugins through Envoy over HTTPS (HTTP/1.1).
Prints both medians and their ratio. Everything is stopped by pid.

    .venv/bin/python tools/rest_latency.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.identity import totp
from vivified.core.identity._totp import decode_secret
from vivified.core.rest import find_envoy, start_envoy
from vivified.identity.v1 import auth_pb2 as auth_pb
from vivified.identity.v1 import auth_pb2_grpc as auth_grpc

PASSWORD = "latency-admin-password-1"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}


def _cli(data: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", args[0], "--data-dir", str(data), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{args}: {done.stderr}{done.stdout}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _token(bootstrap: str, ca: bytes) -> str:
    creds = grpc.ssl_channel_credentials(ca)
    async with grpc.aio.secure_channel(
        bootstrap, creds, options=[("grpc.ssl_target_name_override", "core.vivified.local")]
    ) as ch:
        stub = auth_grpc.AuthServiceStub(ch)
        first = await stub.Login(auth_pb.LoginRequest(username="bench", password=PASSWORD), timeout=10)
        enrol = await stub.EnrollMfa(auth_pb.EnrollMfaRequest(mfa_token=first.mfa_token), timeout=10)
        code = totp(decode_secret(enrol.secret), time.time())
        done = await stub.ConfirmMfa(auth_pb.ConfirmMfaRequest(mfa_token=first.mfa_token, code=code), timeout=10)
        return done.tokens.access_token


async def _grpc_times(bootstrap: str, ca: bytes, token: str, calls: int) -> list[float]:
    creds = grpc.ssl_channel_credentials(ca)
    times = []
    async with grpc.aio.secure_channel(
        bootstrap, creds, options=[("grpc.ssl_target_name_override", "core.vivified.local")]
    ) as ch:
        stub = admin_grpc.PluginAdminServiceStub(ch)
        metadata = (("authorization", f"Bearer {token}"),)
        for _ in range(calls):
            start = time.perf_counter()
            await stub.ListPlugins(admin_pb.ListPluginsRequest(), metadata=metadata, timeout=10)
            times.append(time.perf_counter() - start)
    return times


def _rest_times(port: int, ca_file: Path, token: str, calls: int) -> list[float]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca_file)))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        connection.request("GET", "/v1/plugins", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"REST call answered {response.status}")
    connection.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    envoy_binary = find_envoy()
    if envoy_binary is None:
        raise SystemExit("envoy is not installed (tools/setup.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        core = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vivified.core.cli",
                "core",
                "--data-dir",
                str(data),
                "--listen",
                "127.0.0.1:0",
                "--bootstrap",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        envoy = None
        try:
            run_file = data / "run" / "core.json"
            deadline = time.monotonic() + 60
            while not run_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            bootstrap = json.loads(run_file.read_text())["bootstrap_address"]
            (Path(tmp) / "pw").write_text(PASSWORD + "\n")
            _cli(data, "users", "create-admin", "--username", "bench", "--password-file", str(Path(tmp) / "pw"))
            port = _free_port()
            made = json.loads(_cli(data, "rest", "config", "--listen", f"127.0.0.1:{port}", "--json"))
            envoy = start_envoy(envoy_binary, Path(made["config"]), Path(tmp) / "envoy.log", listen=("127.0.0.1", port))
            ca_file = data / "operator" / "ca.crt"
            token = asyncio.run(_token(bootstrap, ca_file.read_bytes()))
            warm = max(10, args.calls // 10)
            asyncio.run(_grpc_times(bootstrap, ca_file.read_bytes(), token, warm))
            _rest_times(port, ca_file, token, warm)
            grpc_p50 = statistics.median(asyncio.run(_grpc_times(bootstrap, ca_file.read_bytes(), token, args.calls)))
            rest_p50 = statistics.median(_rest_times(port, ca_file, token, args.calls))
        finally:
            if envoy is not None:
                envoy.stop()
            core.terminate()
            core.wait(30)
    print(
        f"ListPlugins p50 over {args.calls} sequential calls: gRPC {grpc_p50 * 1000:.2f} ms, "
        f"REST via Envoy {rest_p50 * 1000:.2f} ms, ratio REST/gRPC {rest_p50 / grpc_p50:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
