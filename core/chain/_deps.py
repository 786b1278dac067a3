"""Everything the chain depends on, in one typed value.

The core builds one from its registry, policy, identity, metrics and audit
log (`vivified.core.app`); tests and benchmarks build one naming only what
they exercise: the defaults are a chain that knows no plugins, applies the
default rate limit and concurrency caps on the system clock, drops its spans,
counts nothing, accepts no user credentials and treats the registry as
always current. Only the audit recorder, the authenticator and the rule
index have no default: what a call is checked against and where it is
recorded are always the caller's choice."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from vivified.core.chain._audit import AuditRecorder
from vivified.core.chain._authn import Authenticator, CredentialCheck
from vivified.core.chain._call import Call
from vivified.core.chain._concurrency import ConcurrencyConfig, ConcurrencyLimits
from vivified.core.chain._methods import MethodFacts
from vivified.core.chain._rate_limit import RateLimitConfig, TokenBuckets
from vivified.core.chain._status_gate import PluginState, StreamTracker
from vivified.core.clock import SystemClock
from vivified.core.policy import Decision, RuleIndex


def _no_plugins(plugin_id: str) -> PluginState | None:
    return None


def _ignore_decision(decision: Decision) -> None:
    return None


def _ignore_done(call: Call, code: grpc.StatusCode) -> None:
    return None


def _dropped_spans() -> trace.Tracer:
    return TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("vivified.core")


def _default_buckets() -> TokenBuckets:
    return TokenBuckets(RateLimitConfig, SystemClock())


def _default_caps() -> ConcurrencyLimits:
    return ConcurrencyLimits(ConcurrencyConfig)


@dataclass(frozen=True)
class ChainDeps:
    """The chain's dependencies; see the module docstring for the defaults."""

    audit: AuditRecorder
    """Writes each call's one record (`AuditRecorder(audit_log)`)."""
    authenticator: Authenticator
    """The verified peer certificate → Principal, and its revocation check."""
    policy_index: Callable[[], RuleIndex]
    """The current rule index, read at every call."""
    methods: Mapping[str, MethodFacts] = field(default_factory=dict)
    """Per-method facts by full name; the core passes `vivified.core.services.METHODS`."""
    plugin_lookup: Callable[[str], PluginState | None] = _no_plugins
    """A plugin's status and granted traits, for the status gate."""
    streams: StreamTracker = field(default_factory=StreamTracker)
    """Open plugin streams, closed when a plugin loses access."""
    buckets: TokenBuckets = field(default_factory=_default_buckets)
    """Per-principal rate limit."""
    concurrency: ConcurrencyLimits = field(default_factory=_default_caps)
    """Per-principal stream and call caps."""
    tracer: Any = field(default_factory=_dropped_spans)
    """An OpenTelemetry tracer; the server span of each call."""
    on_decision: Callable[[Decision], None] = _ignore_decision
    """Each policy decision (metrics)."""
    on_done: Callable[[Call, grpc.StatusCode], None] = _ignore_done
    """Each finished call and its status (metrics)."""
    credentials: CredentialCheck | None = None
    """Verifies user access tokens and API keys; without it they are refused (UNAUTHENTICATED)."""
    registry_stale: Callable[[], str | None] | None = None
    """Why the registry view is too old to trust (the status gate then refuses
    certificate principals); None: always current."""
