"""Observability of a real core process: the Prometheus counters and gauges
move with what the core actually did, and a caller's W3C trace context is
continued into the audit log."""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.clients import admitted_plugin, audit_rows, error_info, operator_channel, plugin_channel
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

ADMIN = "vivified.admin.v1.PluginAdminService"
LIST_PLUGINS = f"/{ADMIN}/ListPlugins"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(core: CoreProcess) -> Samples:
    with urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _plugin_statuses(core: CoreProcess) -> list[int]:
    async with operator_channel(core) as channel:
        listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    return [p.status for p in listed.plugins]


async def test_metrics_move(core: CoreProcess) -> None:
    first = await admitted_plugin(core, "metrics-one")
    await admitted_plugin(core, "metrics-two")
    before = _scrape(core)

    statuses = await _plugin_statuses(core)  # one allowed operator call
    async with plugin_channel(core, first) as channel:  # one call policy denies
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied.value).metadata["rule_id"] == "default-deny"

    calls = "vivified_rpc_calls_total"
    ok = {"service": ADMIN, "method": "ListPlugins", "code": "OK"}
    refused = {"service": ADMIN, "method": "ListPlugins", "code": "PERMISSION_DENIED"}
    # A call is counted as the core finishes it, which may be a moment after the
    # caller has its answer: scrape until the refusal is counted (exact counts below).
    deadline = time.monotonic() + 5
    while _value(after := _scrape(core), calls, **refused) == _value(before, calls, **refused):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert _value(after, calls, **ok) == _value(before, calls, **ok) + 1
    assert _value(after, calls, **refused) == _value(before, calls, **refused) + 1
    decisions = "vivified_policy_decisions_total"
    deny = {"outcome": "deny", "rule": "default-deny"}
    allow = {"outcome": "allow", "rule": "operator-plugin-admin"}
    assert _value(after, decisions, **deny) == _value(before, decisions, **deny) + 1
    assert _value(after, decisions, **allow) == _value(before, decisions, **allow) + 1

    active = statuses.count(admin_pb.PLUGIN_STATUS_ACTIVE)
    assert active == 2
    assert _value(after, "vivified_plugins", status="active") == active
    assert _value(after, "vivified_audit_write_seconds_count") > 0
    assert _value(after, "vivified_audit_records_total") >= _value(before, "vivified_audit_records_total") + 2

    # The status gauges follow the registry.
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).DisablePlugin(
            admin_pb.DisablePluginRequest(plugin_id="metrics-two", reason="metrics test"), timeout=10
        )
    disabled = _scrape(core)
    assert _value(disabled, "vivified_plugins", status="active") == active - 1
    was_disabled = _value(after, "vivified_plugins", status="disabled")
    assert _value(disabled, "vivified_plugins", status="disabled") == was_disabled + 1


async def _list_plugins_trace_id(core: CoreProcess, metadata: tuple[tuple[str, str], ...]) -> str:
    """The trace id the audit row of one operator ListPlugins call carries."""
    before = max((r.seq for r in audit_rows(core)), default=0)
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
            admin_pb.ListPluginsRequest(), metadata=metadata, timeout=10
        )
    rows = [r for r in audit_rows(core) if r.seq > before]
    assert [(r.actor, r.action) for r in rows] == [("operator:admin", LIST_PLUGINS)]
    return str(rows[0].trace_id)


async def test_traceparent_is_continued(core: CoreProcess) -> None:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    continued = await _list_plugins_trace_id(core, (("traceparent", f"00-{trace_id}-{span_id}-01"),))
    assert continued == trace_id

    fresh = [await _list_plugins_trace_id(core, ()) for _ in range(2)]
    for value in fresh:
        assert TRACE_ID.match(value) and value != "0" * 32, value
        assert value != trace_id
    assert fresh[0] != fresh[1], "calls without a traceparent must each start their own trace"
