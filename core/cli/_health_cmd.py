"""`vivified health`: ask a core's `grpc.health.v1.Health/Check` over TLS,
for container probes (Kubernetes' own gRPC probe speaks no TLS, and the core
serves none in the clear).

It calls the bootstrap port (server-authenticated TLS, where the policy lets
anyone ask for health) and verifies the core's certificate against the CA
root given, so a probe that answers is the real core. Exit 0 when the core
answers SERVING, 1 otherwise (unreachable, not serving, bad certificate)."""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from vivified.core.cli._client import ClientError

_DEFAULT_ADDRESS = "127.0.0.1:7444"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "health",
        help="check that a core answers grpc.health.v1 SERVING (exit 0) on its bootstrap port",
        description="Call grpc.health.v1.Health/Check on a core's bootstrap port over TLS, verifying the core's "
        "certificate against the CA root, and exit 0 only when it answers SERVING. Meant for container "
        "readiness and liveness probes.",
    )
    cmd.add_argument(
        "--address", metavar="HOST:PORT",
        help=f"the core's bootstrap port (default $VIVIFIED_BOOTSTRAP_ADDRESS, else {_DEFAULT_ADDRESS})",
    )
    cmd.add_argument(
        "--ca-file", type=pathlib.Path, metavar="FILE",
        help="the core's root CA certificate (default $VIVIFIED_CA_FILE, else <data-dir>/operator/ca.crt)",
    )
    cmd.add_argument("--data-dir", help="core data dir whose operator/ca.crt to trust (default ./.vivified)")
    cmd.add_argument(
        "--server-name", default="localhost",
        help="name the core's certificate must carry (default localhost, which every core certificate has)",
    )
    cmd.add_argument("--service", default="", help="health service name to ask for (default: the server)")
    cmd.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="default 3")
    cmd.add_argument("--json", action="store_true", help='print {"address": ..., "status": ...}')


def _ca_file(args: argparse.Namespace, environ: Mapping[str, str]) -> pathlib.Path:
    if args.ca_file is not None:
        return pathlib.Path(args.ca_file)
    if environ.get("VIVIFIED_CA_FILE"):
        return pathlib.Path(environ["VIVIFIED_CA_FILE"])
    directory = args.data_dir or environ.get("VIVIFIED_DATA_DIR") or ".vivified"
    return pathlib.Path(directory) / "operator" / "ca.crt"


async def check(address: str, ca_pem: bytes, server_name: str, service: str, timeout: float) -> str:
    """The serving status the core reports, or `UNREACHABLE: <code>`."""
    credentials = grpc.ssl_channel_credentials(ca_pem)
    options = [("grpc.ssl_target_name_override", server_name)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            # types-grpcio-health-checking declares HealthStub without its Check/Watch callables.
            reply: health_pb2.HealthCheckResponse = await stub.Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            return f"UNREACHABLE: {err.code().name}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    address = args.address or environ.get("VIVIFIED_BOOTSTRAP_ADDRESS") or _DEFAULT_ADDRESS
    ca_path = _ca_file(args, environ)
    try:
        ca_pem = ca_path.read_bytes()
    except OSError:
        raise ClientError(f"cannot read the core's CA certificate {ca_path}; pass --ca-file", "CA_FILE_UNREADABLE") from None
    status = asyncio.run(check(address, ca_pem, args.server_name, args.service, args.timeout))
    if args.json:
        out.append(json.dumps({"address": address, "status": status}))
    else:
        out.append(f"{address}: {status}")
    return 0 if status == "SERVING" else 1
