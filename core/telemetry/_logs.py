"""`--log-format json`: one JSON object per line with time, level, logger,
message, the plugin id a record names, and the trace and span ids of the span
current when it was logged. `json.dumps` escapes newlines and control
characters (ANSI escapes included), so no value can split or colour a line."""

from __future__ import annotations

import datetime as dt
import json
import logging

from opentelemetry import trace

from vivified.core.kinds import PrincipalKind

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Imported here: the chain is slow to import and a CLI command that never serves needs none of it.
        from vivified.core.chain import current_call  # noqa: PLC0415

        plugin_id = getattr(record, "plugin_id", "")
        call = current_call()
        if (
            not plugin_id
            and call is not None
            and call.principal is not None
            and call.principal.kind == PrincipalKind.PLUGIN
        ):
            plugin_id = call.principal.id  # logged while serving a plugin's call
        if isinstance(plugin_id, str) and plugin_id:
            line["plugin_id"] = plugin_id
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


def configure_logging(level: int, log_format: str) -> None:
    """The root logger's one handler on stderr, as text (default) or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
