"""Requests whose bytes do not decode, refused by the chain rather than by grpc.aio.

`ChainInterceptor` wraps each handler's request deserializer with `tolerant`,
which turns a decoding failure into an `Undecodable` value; the handler step
raises INVALID_ARGUMENT for it (`refuse_undecodable`, `decoded` for request
streams), so the refusal passes the audit layer and the error boundary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vivified.core.chain._call import annotate
from vivified.core.errors import InvalidArgument


@dataclass(frozen=True)
class Undecodable:
    """A request message whose bytes did not decode (malformed wire data, or a
    string field that is not valid UTF-8). grpc.aio answers a deserializer
    that raises with UNKNOWN before any layer runs; the chain receives this
    instead, so the call is authenticated, checked and audited like any other
    and refused with INVALID_ARGUMENT REQUEST_UNDECODABLE by its handler step."""

    error: str
    """The decoder's exception type, e.g. `DecodeError`."""


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None  # a generic handler taking bytes decodes (and refuses) by itself

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, other codecs their own
            return Undecodable(type(exc).__name__)

    return deserialize


def refuse_undecodable(request: Any) -> None:
    if isinstance(request, Undecodable):
        annotate(decode_error=request.error)
        raise InvalidArgument(
            "the request message could not be decoded (malformed bytes or a string field that is not UTF-8)",
            reason="REQUEST_UNDECODABLE",
        )


async def decoded(requests: Any) -> Any:  # the stubs type request streams as sync iterators
    async for request in requests:
        refuse_undecodable(request)
        yield request
