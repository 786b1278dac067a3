"""Rich errors from plugin handlers: a gRPC status carrying `google.rpc.Status`
with one `google.rpc.ErrorInfo`, the shape the core uses too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def status_metadata(
    code: grpc.StatusCode, message: str, *, reason: str, domain: str, metadata: Mapping[str, str] | None = None
) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata holding a `google.rpc.Status` with one ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {})))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return tuple(rpc_status.to_status(status).trailing_metadata)


async def abort(
    context: grpc.aio.ServicerContext[Any, Any],
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    domain: str,
    metadata: Mapping[str, str] | None = None,
) -> NoReturn:
    """End the call with `code` and an ErrorInfo (`reason` in UPPER_SNAKE, `domain`
    `vivified.<area>`). The message reaches the caller: never put secrets in it.

    Example::

        if not request.message.to_address:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "to_address is required",
                        reason="INVALID_REQUEST", domain="vivified.communication")
    """
    await context.abort(code, message, status_metadata(code, message, reason=reason, domain=domain, metadata=metadata))
    raise AssertionError("grpc.aio context.abort returned")  # it always raises; keeps NoReturn honest
