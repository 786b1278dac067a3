"""Container probes: a core's grpc.health.v1 status over TLS
(`python3 -m vivified.core.probe`, or `vivified health`)."""

from vivified.core.probe._health import DEFAULT_ADDRESS, ProbeError, add_arguments, build_parser, check, main, run

__all__ = ["DEFAULT_ADDRESS", "ProbeError", "add_arguments", "build_parser", "check", "main", "run"]
