"""Telemetry of the core: OpenTelemetry traces exported over OTLP/gRPC when the
standard `OTEL_*` variables ask for it, and JSON log lines.

    tracing_from_env  the tracer provider (`Tracing`), off unless configured
    JsonLogFormatter  one JSON object per log line (`--log-format json`)
"""

from vivified.core.telemetry._logs import LOG_FORMATS, JsonLogFormatter, configure_logging
from vivified.core.telemetry._tracing import Tracing, tracing_from_env

__all__ = ["LOG_FORMATS", "JsonLogFormatter", "Tracing", "configure_logging", "tracing_from_env"]
