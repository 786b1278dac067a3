"""Typed errors of the plugin SDK.

Hierarchy::

    VivifiedSDKError              root; `.code`, `.reason`, `.domain`, `.message`, `.metadata`
    ├── ConfigurationError        the plugin's settings or manifest cannot be used (local, never sent)
    ├── CoreUntrustedError        the configured core could not be reached as a verified core:
    │                             TLS verification failed (foreign CA, wrong name) or nothing answered
    ├── InvalidArgumentError      INVALID_ARGUMENT   e.g. MANIFEST_INVALID, CSR_INVALID
    ├── UnauthenticatedError      UNAUTHENTICATED    e.g. JOIN_TOKEN_INVALID, CERTIFICATE_REVOKED
    ├── PermissionDeniedError     PERMISSION_DENIED  e.g. PLUGIN_DISABLED, MANIFEST_NOT_APPROVED
    ├── NotFoundError             NOT_FOUND
    ├── FailedPreconditionError   FAILED_PRECONDITION
    ├── ResourceExhaustedError    RESOURCE_EXHAUSTED e.g. RATE_LIMITED
    └── UnavailableError          UNAVAILABLE        the core is (temporarily) unreachable

Every call the SDK makes to the core goes through `from_rpc_error`, so no raw
`grpc.RpcError` leaves the public API. The core puts a `google.rpc.Status` with
one `google.rpc.ErrorInfo` in the trailing metadata of every error; its reason
(`UPPER_SNAKE`, e.g. `PLUGIN_DISABLED`) and domain (`vivified.<area>`) are what
code should branch on. Transport errors carry no ErrorInfo: their reason and
domain are empty strings. Any other status code becomes a plain `VivifiedSDKError`.

Example::

    try:
        await runtime.heartbeat()
    except PermissionDeniedError as exc:
        if exc.reason == "PLUGIN_DISABLED":
            ...  # an operator disabled the plugin; it may be enabled again
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

SDK_DOMAIN = "vivified.sdk"


class VivifiedSDKError(Exception):
    """Root of every error the SDK raises."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        reason = f" [{self.domain}/{self.reason}]" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class ConfigurationError(VivifiedSDKError):
    """The plugin's settings or manifest cannot be used; raised before contacting the core."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, reason: str = "CONFIGURATION_INVALID") -> None:
        super().__init__(message, reason=reason, domain=SDK_DOMAIN)


class CoreUntrustedError(VivifiedSDKError):
    """The core could not be reached as the configured, verified core.

    Raised when the TLS handshake fails (a certificate from another CA, or one
    without the name `core.<trust-domain>`) or nothing answers at the address.
    Not retried: an impostor must never receive the join token."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="CORE_UNTRUSTED", domain=SDK_DOMAIN)


class InvalidArgumentError(VivifiedSDKError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class UnauthenticatedError(VivifiedSDKError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(VivifiedSDKError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(VivifiedSDKError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(VivifiedSDKError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(VivifiedSDKError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(VivifiedSDKError):
    code = grpc.StatusCode.UNAVAILABLE


_BY_CODE: Mapping[grpc.StatusCode, type[VivifiedSDKError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        UnauthenticatedError,
        PermissionDeniedError,
        NotFoundError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
    )
}


def from_status(code_number: int, reason: str, message: str, domain: str) -> VivifiedSDKError:
    """The typed error for a status carried inside a response (e.g. one refused
    event of a streamed publish) rather than ending the call."""
    code = next((c for c in grpc.StatusCode if c.value[0] == code_number), grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, VivifiedSDKError)(message or code.name, reason=reason, domain=domain, code=code)


def _error_info(err: grpc.aio.AioRpcError) -> tuple[str, error_details_pb2.ErrorInfo | None]:
    """The rich status message and its ErrorInfo, when the server sent them."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]  # AioRpcError is call-shaped
    except ValueError:
        # Code or message disagree with the rich status: trust neither detail.
        return "", None
    if status is None:
        return "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return status.message, info
    return status.message, None


def from_rpc_error(err: grpc.aio.AioRpcError) -> VivifiedSDKError:
    """Turn a failed call into the typed error for its status code.

    Example::

        try:
            reply = await stub.Heartbeat(request)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
    """
    code = err.code()
    message, info = _error_info(err)
    cls = _BY_CODE.get(code, VivifiedSDKError)
    return cls(
        message or err.details() or code.name,
        reason=info.reason if info else "",
        domain=info.domain if info else "",
        metadata=dict(info.metadata) if info else None,
        code=code,
    )
