"""L3: `--log-format json` (core) and `VIVIFIED_LOG_FORMAT=json` (SDK): every
line parses as one JSON object with time, level, logger and message (and the
plugin id, and trace/span ids inside a call); a 1 MB value laden with
newlines and ANSI escapes stays on its line."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from support.clients import approve
from support.lane import RETRIEVE_METHOD, plugin_state, write_manifest
from support.processes import CoreProcess, clean_env, core_running, spawn, stop_process
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.core.telemetry import JsonLogFormatter
from vivified.sdk import load_manifest
from vivified.sdk._logs import JsonLogFormatter as PluginJsonLogFormatter
from vivified.sdk._trace import traced

TESTS = pathlib.Path(__file__).resolve().parents[2]
HOSTILE = "line one\nline two\r\n\x1b[31mred\x1b[0m\x00" + "x" * (1 << 20)


def parsed_lines(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # raises on any line that is not one JSON object
    for entry in parsed:
        assert isinstance(entry, dict)
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    return parsed


@pytest.fixture(scope="module")
def json_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    with core_running(
        tmp_path_factory.mktemp("core") / "data", "--log-format", "json", "--heartbeat-interval", "1"
    ) as core:
        yield core


@pytest.mark.asyncio
@pytest.mark.e2e
async def test_l3_core_and_plugin_log_one_json_object_per_line(json_core: CoreProcess, tmp_path: pathlib.Path) -> None:
    manifest_path = write_manifest(tmp_path, "json-logger", provides=[RETRIEVE_METHOD])
    approval = await approve(json_core, load_manifest(manifest_path), replace=True)
    env = clean_env(
        VIVIFIED_MANIFEST=str(manifest_path),
        VIVIFIED_JOIN_TOKEN=approval.join_token,
        VIVIFIED_CA_FILE=str(json_core.operator_dir / "ca.crt"),
        VIVIFIED_CORE_ADDRESS=json_core.listen_address,
        VIVIFIED_BOOTSTRAP_ADDRESS=json_core.bootstrap_address,
        VIVIFIED_LOG_FORMAT="json",
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )
    log = tmp_path / "plugin.log"
    plugin = spawn([sys.executable, "-m", "support.lane_plugin_main"], env, log)
    try:

        async def healthy() -> bool:
            state = await plugin_state(json_core, "json-logger")
            return bool(state and state.health == admin_pb.PLUGIN_HEALTH_HEALTHY)

        await until(healthy, 30, "the plugin to become healthy")
    finally:
        assert stop_process(plugin) == 0
    plugin_lines = parsed_lines(log.read_text())
    assert all(entry["plugin_id"] == "json-logger" for entry in plugin_lines)
    assert any(entry["logger"].startswith("vivified.sdk") for entry in plugin_lines)
    # The log is stdout and stderr together: the two start-up banner lines are
    # `vivified core`'s stdout (for people); every log line (stderr) is JSON.
    banner = ("vivified core ready:", "list services:")
    core_lines = parsed_lines("\n".join(line for line in json_core.log().splitlines() if not line.startswith(banner)))
    assert any(entry["message"].startswith("core listening") for entry in core_lines)


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("vivified.test", logging.WARNING, __file__, 1, message, args, None)


def test_l3_core_json_line_escapes_a_hostile_value_and_names_the_span() -> None:
    formatter = JsonLogFormatter()
    span = TracerProvider().get_tracer("t").start_span("call")
    with trace.use_span(span, end_on_exit=True):
        line = formatter.format(_record("value %s", HOSTILE))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x00" not in line
    entry = json.loads(line)
    assert entry["message"] == f"value {HOSTILE}"
    assert entry["level"] == "WARNING" and entry["logger"] == "vivified.test"
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert entry["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in json.loads(formatter.format(_record("outside a call")))


def test_l3_plugin_json_line_escapes_a_hostile_value_and_names_the_trace() -> None:
    formatter = PluginJsonLogFormatter("p-1")
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with traced(traceparent):
        line = formatter.format(_record("%s", HOSTILE))
    assert len(line.splitlines()) == 1 and "\x1b" not in line
    entry = json.loads(line)
    assert entry["message"] == HOSTILE and entry["plugin_id"] == "p-1"
    assert entry["trace_id"] == "a" * 32 and entry["span_id"] == "b" * 16
