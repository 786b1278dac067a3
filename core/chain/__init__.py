"""The core's interceptor chain: one layer per concern, composed in `_build`."""

from vivified.core.chain._audit import AuditLayer, AuditRecorder, AuditSink
from vivified.core.chain._authn import (
    AuthenticationLayer,
    Authenticator,
    CredentialCheck,
)
from vivified.core.chain._build import ChainInterceptor, Layer, build_chain, compose
from vivified.core.chain._call import (
    Call,
    Principal,
    annotate,
    call_principal,
    current_call,
)
from vivified.core.chain._concurrency import (
    ConcurrencyConfig,
    ConcurrencyLayer,
    ConcurrencyLimits,
    InFlight,
)
from vivified.core.chain._deps import ChainDeps
from vivified.core.chain._errors import ErrorBoundaryLayer
from vivified.core.chain._methods import MethodFacts, MethodTable
from vivified.core.chain._outcome import Denied, Outcome
from vivified.core.chain._policy import PolicyLayer
from vivified.core.chain._rate_limit import (
    RateLimitConfig,
    RateLimitLayer,
    TokenBuckets,
)
from vivified.core.chain._status import abort_with, error_info, status_metadata
from vivified.core.chain._status_gate import PluginView, StatusGateLayer, StreamTracker
from vivified.core.chain._tracing import TracingLayer
from vivified.core.kinds import PrincipalKind

__all__ = [
    "AuditLayer",
    "AuditRecorder",
    "AuditSink",
    "AuthenticationLayer",
    "Authenticator",
    "Call",
    "ChainDeps",
    "ChainInterceptor",
    "ConcurrencyConfig",
    "ConcurrencyLayer",
    "ConcurrencyLimits",
    "CredentialCheck",
    "Denied",
    "ErrorBoundaryLayer",
    "InFlight",
    "Layer",
    "MethodFacts",
    "MethodTable",
    "Outcome",
    "PluginView",
    "PolicyLayer",
    "Principal",
    "PrincipalKind",
    "RateLimitConfig",
    "RateLimitLayer",
    "StatusGateLayer",
    "StreamTracker",
    "TokenBuckets",
    "TracingLayer",
    "abort_with",
    "annotate",
    "build_chain",
    "call_principal",
    "compose",
    "current_call",
    "error_info",
    "status_metadata",
]
