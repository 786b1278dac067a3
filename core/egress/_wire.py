"""HTTP/1.1 on the wire, framed by h11: the request bytes, the response head
and the body (none, Content-Length, chunked, or until the connection closes).

h11 does no I/O of its own: `ResponseParser` is handed the bytes the client
read from the one checked address it dialled, and turns them into a head and
body pieces, refusing anything malformed (status line, header syntax,
conflicting Content-Length, bad chunk framing, an unrequested 101, any
Transfer-Encoding but chunked). Around it the guards stay ours: a head is at
most 64 KiB and 100 header lines, at most four interim (1xx) heads come
before the final one, the parser never holds more than one read beyond an
incomplete head, and every read is one step run under the idle limit and the
fetch's absolute deadline, so a slow-drip upstream cannot hold a fetch open.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import h11

from vivified.core.egress._errors import request_invalid, timed_out, upstream_failed
from vivified.core.egress._url import EgressUrl

T = TypeVar("T")
HEAD_LIMIT = 64 * 1024
MAX_RESPONSE_HEADERS = 100
MAX_HEADS = 5
READ_SIZE = 64 * 1024
BODYLESS_METHODS = frozenset({"HEAD"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
ACCEPT_ENCODING = "gzip, deflate"
_VERSIONS = frozenset({b"1.0", b"1.1"})


class Steps:
    """Runs network steps under an idle limit and an absolute deadline."""

    def __init__(self, total_seconds: float, idle_seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + total_seconds
        self.idle = idle_seconds

    def remaining(self) -> float:
        return self.deadline - self._loop.time()

    async def run(self, step: Awaitable[T], limit: float | None = None, which: str = "idle") -> T:
        """Await `step`; DEADLINE_EXCEEDED (which, or `total`) if it takes too long,
        UNAVAILABLE if the connection fails under it."""
        bound = self.idle if limit is None else limit
        remaining = self.remaining()
        if remaining < bound:
            bound, which = max(remaining, 0.0), "total"
        try:
            async with asyncio.timeout(bound):
                return await step
        except TimeoutError:
            raise timed_out(which) from None
        except asyncio.LimitOverrunError:
            raise upstream_failed("the upstream sent an oversized line", "bad_response") from None
        except ssl.SSLCertVerificationError:
            raise upstream_failed("the upstream's certificate does not verify for its host name", "tls_verify_failed") from None
        except asyncio.IncompleteReadError:
            raise upstream_failed("the upstream closed the connection early", "connection_lost") from None
        except OSError:
            raise upstream_failed("the connection to the upstream failed", "connection_lost") from None


class Signal(enum.Enum):
    NEED_DATA = "need data"
    """Feed the parser more bytes (or b"" at the end of the stream)."""
    DONE = "done"
    """The body is complete."""


NEED_DATA: Literal[Signal.NEED_DATA] = Signal.NEED_DATA
DONE: Literal[Signal.DONE] = Signal.DONE


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]


def _bad(message: str) -> Exception:
    return upstream_failed(f"the upstream sent an invalid response: {message}", "bad_response")


def _lost() -> Exception:
    return upstream_failed("the upstream closed the connection early", "connection_lost")


class ResponseParser:
    """One exchange of one connection (`Connection: close`), without I/O.

    `request()` gives the bytes to send; then `feed()` what arrives (b"" at
    the end of the stream) and call `head()` until it returns the final head,
    then `body()` until it returns DONE. Every refusal is EGRESS_UPSTREAM_FAILED
    with `why` bad_response (malformed) or connection_lost (the stream ended
    inside a head or before the body's declared end)."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        self._method = ""
        self._eof = False
        self._fed = 0
        self._parsed = 0  # bytes of the stream consumed by heads already returned
        self._heads = 0
        self.final: ResponseHead | None = None

    def request(self, method: str, url: EgressUrl, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
        """The request's bytes; INVALID_REQUEST for anything h11 would not send."""
        fields = [("Host", url.authority), *headers, ("Accept-Encoding", ACCEPT_ENCODING), ("Connection", "close")]
        if body or method in BODY_METHODS:
            fields.append(("Content-Length", str(len(body))))
        try:
            wire = self._h11.send(h11.Request(method=method, target=url.target, headers=fields)) or b""
            if body:
                wire += self._h11.send(h11.Data(data=body)) or b""
            wire += self._h11.send(h11.EndOfMessage()) or b""
        except (h11.LocalProtocolError, UnicodeError) as exc:
            raise request_invalid(f"the request cannot be sent as HTTP/1.1: {exc}") from None
        self._method = method
        return wire

    def feed(self, data: bytes) -> None:
        """Bytes read from the upstream; b"" when it closed the stream."""
        if self._eof:
            if data:
                raise _bad("data after the end of the stream")
            return
        self._eof = not data
        self._fed += len(data)
        self._h11.receive_data(data)

    def _next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            if self._eof:
                raise _lost() from None
            raise _bad(str(exc)) from None

    def _head_size(self) -> int:
        consumed = self._fed - len(self._h11.trailing_data[0])
        size, self._parsed = consumed - self._parsed, consumed
        return size

    def head(self) -> ResponseHead | None:
        """The final response head, or None when more bytes are needed.
        Interim 1xx heads (e.g. 103) are skipped; 101 is refused."""
        if self.final is not None:
            return self.final
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                if self._eof:
                    raise _lost()
                return None
            if not isinstance(event, (h11.InformationalResponse, h11.Response)):
                raise _lost() if isinstance(event, h11.ConnectionClosed) else _bad("no response head")
            self._heads += 1
            if self._head_size() > HEAD_LIMIT:
                raise _bad(f"a response head over {HEAD_LIMIT} bytes")
            raw = event.headers.raw_items()
            if len(raw) > MAX_RESPONSE_HEADERS:
                raise _bad("too many headers")
            if event.http_version not in _VERSIONS:
                raise _bad("status line")
            if event.status_code == 101:
                raise _bad("unrequested protocol switch")
            if isinstance(event, h11.Response):
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
                self.final = ResponseHead(event.status_code, event.reason.decode("latin-1"), headers)
                return self.final
            if self._heads >= MAX_HEADS:
                raise _bad("too many interim responses")

    def declared_length(self) -> int | None:
        """The body's declared length: 0 for a bodyless response, None when
        framed otherwise (chunked or until close). Only after `head()`."""
        head = self.final
        if head is None:
            raise RuntimeError("declared_length() before the head")
        if self._method in BODYLESS_METHODS or head.status in (204, 304):
            return 0
        if head.values("transfer-encoding"):
            return None
        lengths = head.values("content-length")  # h11 has validated it and folded repeats
        return int(lengths[0]) if lengths else None

    def body(self) -> bytes | Literal[Signal.NEED_DATA, Signal.DONE]:
        """The next raw (still content-encoded) piece of the body, NEED_DATA, or DONE."""
        if self.final is None:
            raise RuntimeError("body() before the head")
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                if self._eof:
                    raise _lost()
                return NEED_DATA
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
                return DONE
            raise _bad("unexpected data in the body")


async def read_head(parser: ResponseParser, reader: asyncio.StreamReader, steps: Steps) -> ResponseHead:
    """Read until the parser has the final response head."""
    while (head := parser.head()) is None:
        parser.feed(await steps.run(reader.read(READ_SIZE)))
    return head


async def read_body(parser: ResponseParser, reader: asyncio.StreamReader, steps: Steps) -> AsyncIterator[bytes]:
    """The raw (still content-encoded) body, as it arrives."""
    while True:
        piece = parser.body()
        if piece is NEED_DATA:
            parser.feed(await steps.run(reader.read(READ_SIZE)))
        elif piece is DONE:
            return
        else:
            yield piece
