"""Prometheus metrics of the core, on a registry the core owns (no globals)."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter as _Tally
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from cryptography import x509
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vivified.core.chain import Call, InFlight
from vivified.core.events import SubscriptionLag
from vivified.core.kinds import PluginStatus
from vivified.core.policy import Decision
from vivified.core.registry import UNHEALTHY, PluginRecord

_STATUSES = tuple(PluginStatus)
# Seconds: a brokered call is ~1 ms; forwarded calls and fetches wait on a plugin or the network.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and gauges the chain, registry and audit log move."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "vivified_rpc_calls", "RPCs handled by the core", ["service", "method", "code"], registry=self.registry
        )
        self.call_seconds = Histogram(
            "vivified_rpc_duration_seconds",
            "Time from the chain receiving an RPC to its status (streams: the whole stream)",
            ["service", "method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.event_latency = Histogram(
            "vivified_events_delivery_latency_seconds",
            "Time from an event's publication (its stamped time) to each delivery sent",
            ["subscription"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.egress_seconds = Histogram(
            "vivified_egress_fetch_duration_seconds",
            "Egress fetches (unary Fetch) by plugin and outcome (gRPC code name)",
            ["plugin", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "vivified_certificate_expiry_timestamp_seconds",
            "Not-after time (Unix seconds) of the core's certificates at start-up: core leaf, issuing CA, root",
            ["certificate"],
            registry=self.registry,
        )
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        ProcessCollector(registry=self.registry)
        self.decisions = Counter(
            "vivified_policy_decisions", "Policy decisions", ["outcome", "rule"], registry=self.registry
        )
        self.report_only = Counter(
            "vivified_policy_report_only",
            "Calls a report-only rule would have decided otherwise (the call went as the enforced rules decided)",
            ["decision", "rule"],
            registry=self.registry,
        )
        self.plugins = Gauge("vivified_plugins", "Known plugins by status", ["status"], registry=self.registry)
        self.unhealthy = Gauge(
            "vivified_plugins_unhealthy", "Active plugins that are unhealthy", registry=self.registry
        )
        self.heartbeats = Counter(
            "vivified_plugin_heartbeats",
            "Heartbeats this core accepted, per plugin (liveness is audited as transitions, not per heartbeat)",
            ["plugin"],
            registry=self.registry,
        )
        self.audit_write = Histogram(
            "vivified_audit_write_seconds", "Audit group-commit latency", registry=self.registry
        )
        self.audit_records = Counter("vivified_audit_records", "Audit records committed", registry=self.registry)
        self.breaker_open = Gauge(
            "vivified_gateway_circuit_open",
            "1 while the operator lane's circuit to a target is open or half-open",
            ["target"],
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "vivified_events_delivered", "Event deliveries sent", ["subscription"], registry=self.registry
        )
        self.events_lost = Counter(
            "vivified_events_lost",
            "Unacknowledged events discarded by a subscription's backlog cap",
            ["subscription"],
            registry=self.registry,
        )
        self.dead_letters_dropped = Counter(
            "vivified_events_dead_letters_dropped",
            "Dead letters discarded by a subscription's dead-letter cap",
            ["subscription"],
            registry=self.registry,
        )
        self.events_lag = Gauge(
            "vivified_events_subscription_lag",
            "Events stored but not yet acknowledged, per subscription",
            ["subscription"],
            registry=self.registry,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def watch_concurrency(self, totals: Callable[[], InFlight]) -> None:
        """Gauges of the chain's concurrency slots in use (all principals), and
        the most in use at once since start; read when scraped."""
        for name, what, pick in (
            ("vivified_streams_open", "Streaming calls open", lambda t: t.streams),
            ("vivified_streams_open_peak", "Most streaming calls open at once since start", lambda t: t.peak_streams),
            ("vivified_unary_calls_in_flight", "Unary calls in flight", lambda t: t.calls),
            (
                "vivified_unary_calls_in_flight_peak",
                "Most unary calls in flight at once since start",
                lambda t: t.peak_calls,
            ),
        ):
            gauge = Gauge(name, what, registry=self.registry)
            gauge.set_function(functools.partial(lambda p: float(p(totals())), pick))

    def watch_storage(self, owners: Callable[[], Iterable[str]], footprint: Callable[[str], tuple[int, int]]) -> None:
        """`vivified_storage_bytes{plugin}` and `vivified_storage_objects{plugin}`, read
        from the object store when scraped (one query each per known plugin)."""
        self.registry.register(_StorageCollector(owners, footprint))

    def on_call_done(self, call: Call, code: grpc.StatusCode) -> None:
        self.calls.labels(call.service, call.method_name, code.name).inc()
        self.call_seconds.labels(call.service, call.method_name, code.name).observe(time.perf_counter() - call.started)

    def on_event_latency(self, subscription: str, seconds: float) -> None:
        self.event_latency.labels(subscription).observe(max(seconds, 0.0))

    def on_egress_fetch(self, plugin_id: str, outcome: str, seconds: float) -> None:
        self.egress_seconds.labels(plugin_id, outcome).observe(seconds)

    def on_certificates(self, chain_pem: bytes, root_pem: bytes) -> None:
        """The not-after times of the core's leaf and issuing certificates and the root."""
        chain = x509.load_pem_x509_certificates(chain_pem)
        named = [("core", chain[0])] + [("issuing", cert) for cert in chain[1:2]]
        named.append(("root", x509.load_pem_x509_certificate(root_pem)))
        for name, cert in named:
            self.certificate_expiry.labels(name).set(cert.not_valid_after_utc.timestamp())

    def on_decision(self, decision: Decision) -> None:
        self.decisions.labels("allow" if decision.allowed else "deny", decision.rule_id).inc()
        self.on_report_only(decision)

    def on_report_only(self, decision: Decision) -> None:
        """Counts a decision a report-only rule would have changed (chain or operator lane)."""
        if decision.report_only:
            self.report_only.labels(decision.report_only, decision.report_rule_id).inc()

    def on_audit_commit(self, batch: int, seconds: float) -> None:
        self.audit_write.observe(seconds)
        self.audit_records.inc(batch)

    def on_plugins(self, records: Iterable[PluginRecord]) -> None:
        listed = list(records)
        tally = _Tally(r.status for r in listed)
        for status in _STATUSES:
            self.plugins.labels(status).set(tally.get(status, 0))
        self.unhealthy.set(sum(1 for r in listed if r.status == PluginStatus.ACTIVE and r.health == UNHEALTHY))

    def on_heartbeat(self, plugin_id: str) -> None:
        self.heartbeats.labels(plugin_id).inc()

    def on_breaker(self, target: str, state: str) -> None:
        self.breaker_open.labels(target).set(0 if state == "closed" else 1)

    def on_event_delivered(self, subscription: str) -> None:
        self.events_delivered.labels(subscription).inc()

    def on_events_lost(self, subscription: str, count: int) -> None:
        self.events_lost.labels(subscription).inc(count)

    def on_dead_letters_dropped(self, subscription: str, count: int) -> None:
        self.dead_letters_dropped.labels(subscription).inc(count)

    def on_events_lag(self, lags: Iterable[SubscriptionLag]) -> None:
        for lag in lags:
            self.events_lag.labels(lag.subscription).set(lag.backlog)

    def serve(self, address: str) -> int:
        """Serve /metrics on `host:port`; returns the bound port."""
        host, _, port = address.rpartition(":")
        self._server, self._thread = start_http_server(int(port), addr=host, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _StorageCollector(Collector):
    def __init__(self, owners: Callable[[], Iterable[str]], footprint: Callable[[str], tuple[int, int]]) -> None:
        self._owners = owners
        self._footprint = footprint

    def collect(self) -> Iterable[Metric]:
        stored = GaugeMetricFamily(
            "vivified_storage_bytes", "Bytes in the object store by owning plugin", labels=["plugin"]
        )
        objects = GaugeMetricFamily(
            "vivified_storage_objects", "Objects in the object store by owning plugin", labels=["plugin"]
        )
        for owner in sorted(set(self._owners())):
            size, count = self._footprint(owner)
            stored.add_metric([owner], size)
            objects.add_metric([owner], count)
        return [stored, objects]

    def describe(self) -> Iterable[Metric]:
        # Described without collecting, so registering does not query the store.
        return [
            GaugeMetricFamily("vivified_storage_bytes", "", labels=["plugin"]),
            GaugeMetricFamily("vivified_storage_objects", "", labels=["plugin"]),
        ]
