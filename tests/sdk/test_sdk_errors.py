"""from_rpc_error: real failed calls (a loopback server that aborts) → typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from vivified.sdk import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    VivifiedSDKError,
    from_rpc_error,
)
from vivified.sdk._status import status_metadata

pytestmark = pytest.mark.asyncio

METHOD = "/test.Failing/Fail"


def _fail_with(outcome: dict[str, Any]) -> grpc.GenericRpcHandler:
    async def fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        code, message = outcome["code"], outcome["message"]
        trailing = ()
        if outcome.get("reason"):
            rich_code = outcome.get("rich_code", code)
            trailing = status_metadata(
                rich_code, message, reason=outcome["reason"], domain="vivified.test", metadata={"rule_id": "r-1"}
            )
        await context.abort(code, message, trailing)
        return b""

    handler = grpc.unary_unary_rpc_method_handler(fail)
    return grpc.method_handlers_generic_handler("test.Failing", {"Fail": handler})


@pytest_asyncio.fixture
async def failing() -> AsyncIterator[tuple[grpc.aio.Channel, dict[str, Any]]]:
    outcome: dict[str, Any] = {}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_fail_with(outcome)])
    port = server.add_insecure_port("127.0.0.1:0")  # loopback only; TLS is not what is tested here
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, outcome
    finally:
        await server.stop(0)


async def _error(failing: tuple[grpc.aio.Channel, dict[str, Any]], **outcome: Any) -> VivifiedSDKError:
    channel, current = failing
    current.clear()
    current.update(outcome)
    call = channel.unary_unary(METHOD)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"", timeout=5)
    return from_rpc_error(raised.value)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
    ],
)
async def test_each_status_code_maps_to_its_type_with_the_error_info(
    failing: Any, code: grpc.StatusCode, expected: type[VivifiedSDKError]
) -> None:
    error = await _error(failing, code=code, message="no", reason="SOME_REASON")
    assert type(error) is expected
    assert (error.code, error.reason, error.domain, error.message) == (code, "SOME_REASON", "vivified.test", "no")
    assert error.metadata == {"rule_id": "r-1"}
    assert str(error) == f"{code.name} [vivified.test/SOME_REASON]: no"


async def test_an_unmapped_code_is_the_root_error(failing: Any) -> None:
    error = await _error(failing, code=grpc.StatusCode.DATA_LOSS, message="lost", reason="CORRUPT")
    assert type(error) is VivifiedSDKError
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "CORRUPT")


async def test_without_error_info_reason_and_domain_are_empty(failing: Any) -> None:
    error = await _error(failing, code=grpc.StatusCode.PERMISSION_DENIED, message="plain")
    assert type(error) is PermissionDeniedError
    assert (error.reason, error.domain, error.message) == ("", "", "plain")


async def test_a_rich_status_that_contradicts_the_call_is_ignored(failing: Any) -> None:
    # A status detail claiming another code is not trusted for its reason.
    error = await _error(
        failing,
        code=grpc.StatusCode.PERMISSION_DENIED,
        message="m",
        reason="PLUGIN_DISABLED",
        rich_code=grpc.StatusCode.OK,
    )
    assert type(error) is PermissionDeniedError and error.reason == ""
