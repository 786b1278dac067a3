"""A real OTLP/gRPC receiver on loopback: the collector's TraceService and
MetricsService from opentelemetry-proto on one port, as a collector serves
them, keeping every exported span and histogram data point with its resource."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]


@dataclass
class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    spans: list[ReceivedSpan] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    """Every export request as received (for greps over everything exported)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def Export(  # noqa: N802 - the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.raw.append(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


@dataclass(frozen=True)
class ReceivedHistogramPoint:
    """One histogram data point of one export (cumulative by default: the
    running totals since the exporter started)."""

    name: str
    unit: str
    attributes: dict[str, Any]
    count: int
    sum: float
    resource: dict[str, Any]


@dataclass
class OtlpMetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    points: list[ReceivedHistogramPoint] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    """Every export request as received (for greps over everything exported)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def Export(  # noqa: N802 - the generated servicer's name
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        received = []
        for resource_metrics in request.resource_metrics:
            resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.WhichOneof("data") != "histogram":
                        continue
                    for point in metric.histogram.data_points:
                        received.append(
                            ReceivedHistogramPoint(
                                name=metric.name,
                                unit=metric.unit,
                                attributes={a.key: _value(a.value) for a in point.attributes},
                                count=point.count,
                                sum=point.sum,
                                resource=resource,
                            )
                        )
        with self._lock:
            self.points.extend(received)
            self.raw.append(request.SerializeToString())
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def snapshot(self) -> list[ReceivedHistogramPoint]:
        with self._lock:
            return list(self.points)


@dataclass
class RunningReceiver:
    receiver: OtlpReceiver
    server: grpc.Server
    port: int
    metrics: OtlpMetricsReceiver = field(default_factory=OtlpMetricsReceiver)

    @property
    def env(self) -> dict[str, str]:
        """The standard variables pointing an exporter here (flushing spans every
        100 ms, metrics every 200 ms)."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }


def start_receiver() -> RunningReceiver:
    receiver, metrics = OtlpReceiver(), OtlpMetricsReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(metrics, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return RunningReceiver(receiver, server, port, metrics)
