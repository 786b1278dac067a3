"""Errors of the egress lane.

Hierarchy (all from `vivified.core.errors`)::

    VivifiedError
    ├── InvalidArgument     EGRESS_URL_INVALID (the URL), INVALID_REQUEST (method, headers)
    ├── PermissionDenied    EGRESS_DENIED; ErrorInfo metadata `why` says which check refused
    ├── ResourceExhausted   EGRESS_TOO_LARGE, RATE_LIMITED, EGRESS_BUSY
    ├── DeadlineExceeded    EGRESS_TIMEOUT; metadata `which` is connect, idle or total
    ├── Unavailable         EGRESS_UPSTREAM_FAILED; metadata `why`
    └── FailedPrecondition  EGRESS_CONFIG_INVALID (refused at startup),
                            EGRESS_CREDENTIAL_UNSET (an injected credential has no value)

Messages reach the plugin: they name the host or address that was refused,
never a credential, a header value or a body.
"""

from __future__ import annotations

from vivified.core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

DOMAIN = "vivified.egress"
RULE_ID = "egress"


def url_invalid(message: str, why: str) -> InvalidArgument:
    return InvalidArgument(message, reason="EGRESS_URL_INVALID", domain=DOMAIN, metadata={"why": why})


def request_invalid(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_REQUEST", domain=DOMAIN)


def denied(message: str, why: str, **detail: str) -> PermissionDenied:
    # rule_id lets the chain's audit record name the egress check as the deciding rule.
    return PermissionDenied(
        message, reason="EGRESS_DENIED", domain=DOMAIN, metadata={"why": why, "rule_id": RULE_ID, **detail}
    )


def too_large(message: str) -> ResourceExhausted:
    return ResourceExhausted(message, reason="EGRESS_TOO_LARGE", domain=DOMAIN)


def exhausted(message: str, reason: str, rule_id: str) -> ResourceExhausted:
    """A per-plugin limit refused the fetch; the rule names the limit in the audit record."""
    return ResourceExhausted(message, reason=reason, domain=DOMAIN, metadata={"rule_id": rule_id})


def timed_out(which: str) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"the upstream exceeded the {which} timeout", reason="EGRESS_TIMEOUT", domain=DOMAIN, metadata={"which": which}
    )


def upstream_failed(message: str, why: str) -> Unavailable:
    return Unavailable(message, reason="EGRESS_UPSTREAM_FAILED", domain=DOMAIN, metadata={"why": why})


def config_invalid(message: str) -> FailedPrecondition:
    return FailedPrecondition(f"egress config: {message}", reason="EGRESS_CONFIG_INVALID", domain=DOMAIN)


def credential_unset(message: str) -> FailedPrecondition:
    """A credential the manifest has the core inject has no usable value."""
    return FailedPrecondition(message, reason="EGRESS_CREDENTIAL_UNSET", domain=DOMAIN)
