"""JSON log lines for plugins (`VIVIFIED_LOG_FORMAT=json`): one JSON object per
line with time, level, logger, message, the plugin id, and the trace and span
ids of the traceparent current when the record was logged (inside a handled
event or a traced call). `json.dumps` escapes newlines and control characters
(ANSI escapes included), so no value can split or colour a line."""

from __future__ import annotations

import datetime as dt
import json
import logging

from vivified.sdk._trace import current_traceparent

LOG_FORMATS = ("text", "json")


class JsonLogFormatter(logging.Formatter):
    """A log record as one line of JSON, naming `plugin_id`."""

    def __init__(self, plugin_id: str) -> None:
        super().__init__()
        self._plugin_id = plugin_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "plugin_id": self._plugin_id,
        }
        traceparent = current_traceparent()
        if traceparent:
            _, trace_id, span_id, _ = traceparent.split("-")
            line["trace_id"], line["span_id"] = trace_id, span_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


def configure_json_logging(plugin_id: str, level: int = logging.INFO) -> None:
    """The root logger's one handler on stderr, writing JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(plugin_id))
    logging.basicConfig(level=level, handlers=[handler], force=True)
