"""A core's `grpc.health.v1` status over TLS, for container probes.

Kubernetes' own gRPC probe speaks no TLS, and the core serves none in the
clear, so probes exec this: it calls `Health/Check` on the bootstrap port
(server-authenticated TLS, where the policy lets anyone ask for health) and
verifies the core's certificate against the CA root given, so a probe that
answers is the real core. Exit 0 when the core answers SERVING, 1 otherwise.

It imports only grpc and the health stubs (`python3 -m vivified.core.probe`
costs a fraction of the full CLI's start-up, which matters at one probe every
few seconds); `vivified health` is the same check with the same flags."""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:7444"


class ProbeError(Exception):
    """The probe cannot run (its CA file is unreadable); the message says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help=f"the core's bootstrap port (default $VIVIFIED_BOOTSTRAP_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--ca-file",
        type=pathlib.Path,
        metavar="FILE",
        help="the core's root CA certificate (default $VIVIFIED_CA_FILE, else <data-dir>/operator/ca.crt)",
    )
    parser.add_argument("--data-dir", help="core data dir whose operator/ca.crt to trust (default ./.vivified)")
    parser.add_argument(
        "--server-name",
        default="localhost",
        help="name the core's certificate must carry (default localhost, which every core certificate has)",
    )
    parser.add_argument("--service", default="", help="health service name to ask for (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="default 3")
    parser.add_argument("--json", action="store_true", help='print {"address": ..., "status": ...}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vivified.core.probe",
        description="Exit 0 only when the core answers grpc.health.v1 SERVING on its bootstrap port (TLS, "
        "certificate verified against the CA root). Same flags as `vivified health`.",
    )
    add_arguments(parser)
    return parser


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
    """Check once; the line to print goes to `out`. Raises ProbeError when the CA file is unreadable."""
    address = args.address or environ.get("VIVIFIED_BOOTSTRAP_ADDRESS") or DEFAULT_ADDRESS
    ca_path = _ca_file(args, environ)
    try:
        ca_pem = ca_path.read_bytes()
    except OSError:
        raise ProbeError(
            f"cannot read the core's CA certificate {ca_path}; pass --ca-file", "CA_FILE_UNREADABLE"
        ) from None
    status = asyncio.run(check(address, ca_pem, args.server_name, args.service, args.timeout))
    out.append(json.dumps({"address": address, "status": status}) if args.json else f"{address}: {status}")
    return 0 if status == "SERVING" else 1


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    import os

    out: list[str] = []
    try:
        code = run(build_parser().parse_args(argv), dict(os.environ) if environ is None else environ, out)
    except ProbeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in out:
        print(line)
    return code
