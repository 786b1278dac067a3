"""The Grafana dashboard queries exactly metrics a real core exports, and the
metrics issue 14 lists move: RPC duration by service/method/code, certificate
expiry, storage, process metrics (the event delivery latency is checked where events
flow: test_traces_e2e.py's canary test)."""

from __future__ import annotations

import json
import pathlib
import re
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.clients import operator_channel
from support.processes import CoreProcess
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc

DASHBOARD = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "vivified.json"
# The metric names in a PromQL expression (every one here is vivified_* or process_*).
_NAME = re.compile(r"\b((?:vivified|process)_[a-z_]+)\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported(core: CoreProcess) -> tuple[set[str], dict[str, float]]:
    with urllib.request.urlopen(f"http://{core.metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families} | {f.name + s for f in families for s in _SUFFIXES}
    samples = {f"{s.name}{sorted(s.labels.items())}": s.value for f in families for s in f.samples}
    return names, samples


def dashboard_metrics() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert len(exprs) == len(panels) >= 15
    return {name for expr in exprs for name in _NAME.findall(expr)}


@pytest.mark.asyncio
@pytest.mark.e2e
async def test_dashboard_queries_only_metrics_the_core_exports(core: CoreProcess) -> None:
    async with operator_channel(core) as channel:
        await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(admin_pb.ListPluginsRequest(), timeout=10)
    names, samples = exported(core)
    used = dashboard_metrics()
    assert used - names == set()
    for listed in (
        "vivified_rpc_duration_seconds",
        "vivified_events_delivery_latency_seconds",
        "vivified_egress_fetch_duration_seconds",
        "vivified_certificate_expiry_timestamp_seconds",
        "vivified_storage_bytes",
        "vivified_storage_objects",
        "process_resident_memory_bytes",
    ):
        assert listed in names and any(name.startswith(listed) for name in used)
    count = (
        "vivified_rpc_duration_seconds_count[('code', 'OK'), ('method', 'ListPlugins'), "
        "('service', 'vivified.admin.v1.PluginAdminService')]"
    )
    assert samples[count] >= 1
    now = time.time()
    for certificate in ("core", "root"):
        assert samples[f"vivified_certificate_expiry_timestamp_seconds[('certificate', '{certificate}')]"] > now
