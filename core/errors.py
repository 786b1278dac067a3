"""Errors of the core.

`VivifiedError` is the root of every error the core reports to a caller, on
the RPC path and in the CLI. Each carries a gRPC code, a stable reason (one of
the `vivified.common.v1.ErrorReason` names without its prefix, e.g.
`PLUGIN_DISABLED`) and a domain::

    VivifiedError                 root; code INTERNAL unless a subclass says otherwise
    ├── InvalidArgument           INVALID_ARGUMENT
    ├── Unauthenticated           UNAUTHENTICATED
    │   └── TokenError            identity: an access token that does not verify
    ├── PermissionDenied          PERMISSION_DENIED
    ├── NotFound                  NOT_FOUND
    ├── AlreadyExists             ALREADY_EXISTS
    ├── FailedPrecondition        FAILED_PRECONDITION
    │   ├── CAError               ca: unusable CA material (stops start-up)
    │   ├── KeyFileError          ca: a key file others can read (stops start-up)
    │   ├── TokenKeyInsecure      identity: weak or exposed token key (stops start-up)
    │   ├── SecretsKeyInsecure    plugin_config: weak or exposed secrets key (stops start-up)
    │   └── AuditTailTampered     audit: the log's tail does not match its checkpoint (stops start-up)
    ├── ResourceExhausted         RESOURCE_EXHAUSTED
    ├── Unavailable               UNAVAILABLE
    ├── DeadlineExceeded          DEADLINE_EXCEEDED
    ├── Aborted                   ABORTED (a concurrent write won; retry)
    ├── DataLoss                  DATA_LOSS (stored data failed authentication)
    └── TargetError               gateway: a forwarded call's failure at its target, with the target's code

Handlers raise these; the interceptor chain's error boundary turns them into
a `google.rpc.Status` with an `ErrorInfo` detail. The message is shown to the
caller, so it must never contain secrets.

Outside the RPC path, and so deliberately not `VivifiedError`s: their
messages are for the operator's terminal and logs (they may name files,
hosts, settings), they carry no ErrorInfo reason, and a call that meets one
anyway is answered by the error boundary as a sanitised INTERNAL, never with
its message::

    PolicyError           policy: a rules file that cannot be understood (stops start-up)
    InvalidCatalogue      traits: malformed trait or role catalogue data (a ValueError; stops start-up)
    SettingsError         settings: a flag, variable, config entry or override the core cannot accept
    └── NotOverridable    settings: a key that cannot be changed at runtime
    DatabaseError         db: start-up and `vivified db` problems (see `vivified.core.db`)
    ├── DatabaseUnavailable   the server cannot be reached or refuses the login
    ├── SchemaNotCurrent      the schema is behind (or ahead of) this release
    └── MigrationFailed       a migration step failed and was rolled back
    AuditSyncFailed       audit: the group sync failed; the log refuses every later append
    WatcherTooSlow        audit: a live feed watcher's buffer filled (its RPC ends RESOURCE_EXHAUSTED)
    ClientError           cli: an operator command's failed call, with the core's reason
    PluginProjectError    cli: `vivified up` cannot use a plugin project (a ValueError)
    SandboxRefused        cli: a plugin that may not run without a sandbox (no --allow-unsandboxed)
    ProbeError            probe: the container health probe could not get SERVING (exit status 1)

Inside the chain only: `vivified.core.chain.Denied`, a layer's refusal, which
the error boundary records and sends; it never leaves the chain.

`tests/core/test_error_hierarchy.py` checks that every exception class the
core defines appears in this docstring.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class VivifiedError(Exception):
    """Root of every error the core reports to a caller (see the module docstring)."""

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


class Aborted(VivifiedError):
    code = grpc.StatusCode.ABORTED


class DataLoss(VivifiedError):
    code = grpc.StatusCode.DATA_LOSS
