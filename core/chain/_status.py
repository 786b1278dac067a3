"""Rich gRPC errors: `google.rpc.Status` with an `ErrorInfo` detail."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def status_metadata(
    code: grpc.StatusCode, message: str, reason: str, domain: str, metadata: Mapping[str, str] | None = None
) -> tuple[tuple[str, bytes | str], ...]:
    """Trailing metadata carrying `google.rpc.Status` with one ErrorInfo."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {}))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return tuple(rpc_status.to_status(status).trailing_metadata)


async def abort_with(
    context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    code: grpc.StatusCode,
    message: str,
    reason: str,
    domain: str,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Abort the call with a rich status. Never returns."""
    await context.abort(code, message, status_metadata(code, message, reason, domain, metadata))


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a rich status received from a peer, if any."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None
