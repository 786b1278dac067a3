"""A small HTTP/1.1 client that connects only to addresses already checked.

Why not aiohttp or httpx: the proxy needs exactly one behaviour from a client
— dial this checked IP, verify TLS for that host name, send one request, and
count every byte coming back — and none of their conveniences (connection
pools keyed by name, proxies from the environment, cookie jars, automatic
redirects and decompression, re-resolution on retry). Each of those would
have to be switched off and kept off. This client dials itself and leaves
only the HTTP/1.1 syntax to h11 (`_wire`), which does no I/O. One connection
per request (`Connection: close`), so a connection's checks never outlive its
request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from vivified.core.egress._decode import BodyDecoder
from vivified.core.egress._errors import too_large, upstream_failed
from vivified.core.egress._url import EgressUrl
from vivified.core.egress._wire import (
    HEAD_LIMIT,
    ResponseHead,
    ResponseParser,
    Steps,
    read_body,
    read_head,
)
from vivified.core.errors import DeadlineExceeded, Unavailable

Connector = Callable[
    [str, int, ssl.SSLContext | None, str | None], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
]
"""(address, port, TLS context or None, TLS server name) -> an open stream."""


async def open_stream(
    address: str, port: int, tls: ssl.SSLContext | None, server_hostname: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Dial exactly `address`; TLS (when given) verifies `server_hostname`."""
    return await asyncio.open_connection(address, port, ssl=tls, server_hostname=server_hostname, limit=HEAD_LIMIT)


class UpstreamResponse:
    """A response whose body has not been read yet. Close it in every case."""

    def __init__(
        self,
        head: ResponseHead,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        steps: Steps,
        decoder: BodyDecoder,
        parser: ResponseParser,
    ) -> None:
        self.head = head
        self.address = address
        self.decoder = decoder
        self._reader, self._writer, self._steps = reader, writer, steps
        self._parser = parser

    async def chunks(self) -> AsyncIterator[bytes]:
        """Decoded body pieces; EGRESS_TOO_LARGE at the cap. Closes the connection."""
        try:
            async for raw in read_body(self._parser, self._reader, self._steps):
                if piece := self.decoder.feed(raw):
                    yield piece
            if tail := self.decoder.finish():
                yield tail
        finally:
            self.close()

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    def close(self) -> None:
        # abort, not close: the exchange is over (Connection: close), and a
        # graceful TLS shutdown would give a stalling upstream more time.
        self._writer.transport.abort()


class HttpClient:
    """Sends one request to the first checked address that accepts a connection."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        connector: Connector = open_stream,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._connector = connector

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            # The system trust store, hostname checks on, TLS 1.2 or later.
            self._ssl = ssl.create_default_context()
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._ssl

    async def _connect(
        self, url: EgressUrl, addresses: Sequence[str], steps: Steps
    ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        tls = self._tls() if url.scheme == "https" else None
        failure: Exception = upstream_failed(f"could not connect to {url.host}", "connect_failed")
        for address in addresses:
            try:
                reader, writer = await steps.run(
                    self._connector(address, url.port, tls, url.host if tls else None),
                    limit=self._connect_timeout,
                    which="connect",
                )
            except Unavailable as exc:
                if exc.metadata.get("why") == "tls_verify_failed":
                    raise
                failure = upstream_failed(f"could not connect to {url.host}", "connect_failed")
            except DeadlineExceeded as exc:
                if exc.metadata.get("which") == "total":
                    raise
                failure = exc
            else:
                return address, reader, writer
        raise failure

    async def send(
        self,
        url: EgressUrl,
        addresses: Sequence[str],
        method: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        steps: Steps,
        max_body: int,
    ) -> UpstreamResponse:
        """Connect, send the request and read the response head."""
        parser = ResponseParser()
        request = parser.request(method, url, headers, body)  # refused before dialling
        address, reader, writer = await self._connect(url, addresses, steps)
        try:
            writer.write(request)
            await steps.run(writer.drain())
            head = await read_head(parser, reader, steps)
            length = parser.declared_length()
            encoding = ",".join(head.values("content-encoding"))
            decoder = BodyDecoder(encoding, max_body)
            if length is not None and length > decoder.raw_limit:
                raise too_large(f"the response body exceeds {max_body} bytes")
        except BaseException:
            writer.transport.abort()
            raise
        return UpstreamResponse(head, address, reader, writer, steps, decoder, parser)
