"""The span sink of `bench invoke`'s traced core: an OTLP/gRPC `TraceService`
on loopback in a process of its own (receiving spans then costs the measuring
process nothing), which accepts every export and keeps the number of spans
received in `<dir>/spans`; it writes its port to `<dir>/otlp.json` once it serves.

    python -m vivified.bench._otlp DIR"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class _Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, count_file: pathlib.Path) -> None:
        self._count_file = count_file
        self._spans = 0
        self._lock = threading.Lock()

    def Export(  # noqa: N802 - the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self._spans += spans
            self._count_file.write_text(str(self._spans))
        return trace_service_pb2.ExportTraceServiceResponse()


def spans_received(directory: pathlib.Path) -> int:
    try:
        return int((directory / "spans").read_text() or 0)
    except (OSError, ValueError):
        return 0


def exporter_env(port: int) -> dict[str, str]:
    """The standard variables that switch a process's tracing on, every span sampled, to the sink."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_SAMPLER": "always_on",
    }


def main(argv: list[str]) -> int:
    directory = pathlib.Path(argv[0])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Sink(directory / "spans"), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    (directory / "otlp.json").write_text(json.dumps({"port": str(port)}))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
