"""`vivified health`: a core's grpc.health.v1 status over TLS, exit 0 only on
SERVING (the check in `vivified.core.probe`, which container probes run as
`python3 -m vivified.core.probe` with the same flags)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from vivified.core.cli._client import ClientError
from vivified.core.probe import ProbeError, add_arguments
from vivified.core.probe import run as probe


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "health",
        help="check that a core answers grpc.health.v1 SERVING (exit 0) on its bootstrap port",
        description="Call grpc.health.v1.Health/Check on a core's bootstrap port over TLS, verifying the core's "
        "certificate against the CA root, and exit 0 only when it answers SERVING. Container probes run the "
        "same check as `python3 -m vivified.core.probe` (same flags, lighter start-up).",
    )
    add_arguments(cmd)


def run(args: argparse.Namespace, environ: Mapping[str, str], out: list[str]) -> int:
    try:
        return probe(args, environ, out)
    except ProbeError as exc:
        raise ClientError(str(exc), exc.reason) from None
