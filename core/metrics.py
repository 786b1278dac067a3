"""Prometheus metrics of the core, on a registry the core owns (no globals)."""

from __future__ import annotations

import functools
import threading
from collections import Counter as _Tally
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from vivified.core.chain import Call, InFlight
from vivified.core.events import SubscriptionLag
from vivified.core.kinds import PluginStatus
from vivified.core.policy import Decision
from vivified.core.registry import PluginRecord

_STATUSES = tuple(PluginStatus)


class Metrics:
    """Counters and gauges the chain, registry and audit log move."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "vivified_rpc_calls", "RPCs handled by the core", ["service", "method", "code"], registry=self.registry
        )
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
        self.unhealthy = Gauge("vivified_plugins_unhealthy", "Active plugins that are unhealthy", registry=self.registry)
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
            ("vivified_unary_calls_in_flight_peak", "Most unary calls in flight at once since start",
             lambda t: t.peak_calls),
        ):
            gauge = Gauge(name, what, registry=self.registry)
            gauge.set_function(functools.partial(lambda p: float(p(totals())), pick))

    def on_call_done(self, call: Call, code: grpc.StatusCode) -> None:
        self.calls.labels(call.service, call.method_name, code.name).inc()

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
        self.unhealthy.set(sum(1 for r in listed if r.status == PluginStatus.ACTIVE and r.health == "unhealthy"))

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
