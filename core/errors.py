"""Domain errors of the core.

Hierarchy::

    VivifiedError                 root; carries a gRPC code, a stable reason and a domain
    ├── InvalidArgument           INVALID_ARGUMENT
    ├── Unauthenticated           UNAUTHENTICATED
    ├── PermissionDenied          PERMISSION_DENIED
    ├── NotFound                  NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS
    ├── FailedPrecondition        FAILED_PRECONDITION
    ├── ResourceExhausted         RESOURCE_EXHAUSTED
    ├── Unavailable               UNAVAILABLE
    └── DeadlineExceeded          DEADLINE_EXCEEDED

Handlers raise these; the innermost layer of the interceptor chain turns them
into a `google.rpc.Status` with an `ErrorInfo` detail. The reason is one of the
`vivified.common.v1.ErrorReason` names without its prefix, e.g. `PLUGIN_DISABLED`.
The message is shown to the caller, so it must never contain secrets.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class VivifiedError(Exception):
    """Root of every error the core reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        domain: str = "vivified.core",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})

    @property
    def is_denial(self) -> bool:
        """A decision against the caller (recorded as `deny` in the audit log):
        an identity or permission refusal, or any refusal a rule made, which
        names itself in `metadata["rule_id"]` (rate limits included)."""
        return self.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED) or bool(
            self.metadata.get("rule_id")
        )


class InvalidArgument(VivifiedError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(VivifiedError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(VivifiedError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(VivifiedError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VivifiedError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(VivifiedError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(VivifiedError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(VivifiedError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(VivifiedError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
