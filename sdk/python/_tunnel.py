"""TCP tunnels through the core (`EgressProxyService.Connect`).

A plugin reaches nothing outside but through the core. A tunnel carries raw
bytes to a `host:port` its approved manifest lists under
`security.allowed_tunnels` (or that the operator grants it); TLS inside the
tunnel (SMTP STARTTLS, implicit TLS) is end to end between the plugin and the
server.

Example (SMTP with aiosmtplib over the tunnel)::

    async with await runtime.connect("smtp.example.com", 587) as tunnel:
        smtp = aiosmtplib.SMTP(hostname="smtp.example.com", sock=await tunnel.socket())
        await smtp.connect()
        await smtp.starttls()
        ...

Or byte by byte: `await tunnel.send(b"EHLO me\\r\\n")`, `await tunnel.receive()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType
from typing import Self

import grpc
from google.protobuf import duration_pb2

from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.sdk._errors import SDK_DOMAIN, VivifiedSDKError, from_rpc_error
from vivified.sdk._trace import trace_metadata

_log = logging.getLogger(__name__)
_READ_SIZE = 64 * 1024


class Tunnel:
    """One open tunnel. Use either `send`/`receive` or `socket()`, not both.
    `close()` (or leaving `async with`) ends it; the core's audit record of
    the tunnel is written when it ends."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[egress_pb2.ConnectRequest, egress_pb2.ConnectResponse],
        resolved_address: str,
    ) -> None:
        self._call = call
        self.resolved_address = resolved_address
        """The address the core connected to."""
        self._bridge: list[asyncio.Task[None]] = []
        self._done_writing = False
        self.error: VivifiedSDKError | None = None
        """Why the tunnel ended abnormally, once it has (e.g. the core's byte or idle limit)."""

    async def send(self, data: bytes) -> None:
        """Send bytes to the server."""
        if data:
            try:
                await self._call.write(egress_pb2.ConnectRequest(data=data))
            except grpc.aio.AioRpcError as err:
                raise from_rpc_error(err) from None

    async def receive(self) -> bytes:
        """The next bytes from the server; b"" once the server has closed."""
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        if not isinstance(response, egress_pb2.ConnectResponse):  # grpc.aio.EOF
            return b""
        return response.data

    async def done_writing(self) -> None:
        """Half-close: the server sees end of input; its answer can still be received."""
        if not self._done_writing:
            self._done_writing = True
            with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
                await self._call.done_writing()

    async def socket(self) -> socket.socket:
        """A connected socket whose bytes travel through the tunnel, for
        libraries that want one (e.g. `aiosmtplib.SMTP(sock=...)`, or
        `ssl.wrap_socket`). Closing it half-closes the tunnel."""
        if self._bridge:
            raise VivifiedSDKError("socket() was already called", reason="ALREADY_BRIDGED", domain=SDK_DOMAIN)
        outer, inner = socket.socketpair()
        outer.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=inner, limit=_READ_SIZE)
        self._bridge = [
            asyncio.ensure_future(self._to_server(reader)),
            asyncio.ensure_future(self._to_socket(writer)),
        ]
        return outer

    async def _to_server(self, reader: asyncio.StreamReader) -> None:
        try:
            while piece := await reader.read(_READ_SIZE):
                await self.send(piece)
        except (OSError, VivifiedSDKError) as exc:
            _log.debug("tunnel: sending ended: %s", exc)
        finally:
            await self.done_writing()

    async def _to_socket(self, writer: asyncio.StreamWriter) -> None:
        try:
            while piece := await self.receive():
                writer.write(piece)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except VivifiedSDKError as exc:
            self.error = exc
            _log.info("tunnel ended: %s (%s)", exc.reason, exc.message)
            writer.transport.abort()
        except OSError:
            writer.transport.abort()

    async def wait_closed(self) -> None:
        """Wait until both directions have ended (the server closed and the
        socket's user closed it)."""
        await asyncio.gather(*self._bridge, return_exceptions=True)

    async def close(self) -> None:
        """End the tunnel: half-close, then let the core finish and audit it."""
        await self.done_writing()
        try:
            async with asyncio.timeout(5):
                if self._bridge:
                    await self.wait_closed()
                else:
                    while await self.receive():
                        pass
        except (TimeoutError, VivifiedSDKError):
            pass
        finally:
            for task in self._bridge:
                task.cancel()
            await asyncio.gather(*self._bridge, return_exceptions=True)
            self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def open_tunnel(channel: grpc.aio.Channel, host: str, port: int, timeout: float | None) -> Tunnel:
    """Open a tunnel on `channel`; raises the core's refusal as a typed error
    (`PermissionDeniedError` EGRESS_DENIED, `UnavailableError` ...)."""
    opening = egress_pb2.ConnectOpen(host=host, port=port)
    if timeout is not None:
        opening.timeout.CopyFrom(duration_pb2.Duration(seconds=int(timeout), nanos=int(timeout % 1 * 1e9)))
    call = egress_pb2_grpc.EgressProxyServiceStub(channel).Connect(metadata=trace_metadata())
    try:
        await call.write(egress_pb2.ConnectRequest(open=opening))
        first = await call.read()
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None
    if not isinstance(first, egress_pb2.ConnectResponse) or first.WhichOneof("part") != "opened":
        call.cancel()
        raise VivifiedSDKError("the core did not open the tunnel", reason="TUNNEL_NOT_OPENED", domain=SDK_DOMAIN)
    return Tunnel(call, first.opened.resolved_address)
