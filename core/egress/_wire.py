"""HTTP/1.1 on the wire, framed by h11: the request bytes, the response head
and the body (none, Content-Length, chunked, or until the connection closes).

h11 does no I/O of its own: `ResponseParser` is handed the bytes the client
read from the one checked address it dialled, and turns them into a head and
body pieces, refusing anything malformed (status line, header syntax,
conflicting Content-Length, bad chunk framing, an unrequested 101, any
Transfer-Encoding but chunked). Around it the guards stay ours: a head is at
most 64 KiB and 100 header lines (a status line at most 1 KiB, a header line
16 KiB, no obsolete folding), chunk lines and trailers at most 8 KiB, at most
four interim (1xx) heads come before the final one, the parser never holds
more than one read beyond what h11 is parsing, and every read is one step run
under the idle limit and the fetch's absolute deadline, so a slow-drip
upstream cannot hold a fetch open.
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
TRAILER_LIMIT = 8 * 1024
MAX_STATUS_LINE = 1024
MAX_HEADER_LINE = 16 * 1024
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
            raise upstream_failed(
                "the upstream's certificate does not verify for its host name", "tls_verify_failed"
            ) from None
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
    inside a head or before the body's declared end).

    Memory stays bounded whatever the upstream sends: h11 is handed at most a
    window of unparsed bytes (a head's 64 KiB, then 8 KiB for chunk lines and
    trailers; body data is drained as it comes), the rest of a read waits
    here, and before h11 parses a head its lines are measured: h11's line
    regexes allocate a few hundred bytes per byte of a long status line or
    header value, so a status line over 1 KiB, a header line over 16 KiB and
    obsolete line folding (which RFC 9112 §5.2 lets a proxy refuse, and
    which h11 would join into one long line) are refused first."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
        self._method = ""
        self._pending = b""  # read, not yet handed to h11
        self._eof = False  # the upstream closed the stream
        self._closed = False  # ... and h11 has been told
        self._held = 0  # at least what h11 holds unparsed
        self._lines = _HeadLines()
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
        if data:
            self._pending += data
        else:
            self._eof = True

    def _push(self) -> bool:
        """Hand h11 more of what was read, within the window; False when
        there is nothing left to hand over (read more). While a head is being
        read, h11 gets its bytes only up to the head's empty line, so what it
        holds when the head is parsed is that head alone."""
        if self._pending:
            window = HEAD_LIMIT if self.final is None else TRAILER_LIMIT
            if self._held >= window:
                # _held only ever over-counts (h11 consumed some); count exactly, at most
                # once per window's worth of bytes, since it copies h11's buffer.
                self._held = len(self._h11.trailing_data[0])
                if self._held >= window:
                    raise _bad("a head, chunk line or trailer section over the size limit")
            room = window - self._held
            if self.final is not None:
                size = min(room, len(self._pending))
            elif self._lines.done:
                return False  # h11 has the whole head and still wants more: it is refused below
            else:
                size = self._lines.scan(self._pending[:room])
            piece, self._pending = self._pending[:size], self._pending[size:]
            self._held += size
            self._h11.receive_data(piece)
            return True
        if self._eof and not self._closed:
            self._closed = True
            self._h11.receive_data(b"")
            return True
        return False

    def _next(self) -> h11.Event | Literal[Signal.NEED_DATA]:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._closed:
                    raise _lost() from None
                raise _bad(str(exc)[:200]) from None
            if event is h11.PAUSED:
                raise _bad("data after the response")
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if not self._push():
                if self._closed:
                    raise _lost()
                if self.final is None and self._lines.done:
                    raise _bad("response head")
                return NEED_DATA

    def head(self) -> ResponseHead | None:
        """The final response head, or None when more bytes are needed.
        Interim 1xx heads (e.g. 103) are skipped; 101 is refused."""
        if self.final is not None:
            return self.final
        while True:
            event = self._next()
            if event is NEED_DATA:
                return None
            if not isinstance(event, (h11.InformationalResponse, h11.Response)):
                raise _lost() if isinstance(event, h11.ConnectionClosed) else _bad("no response head")
            self._heads += 1
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
            self._lines = _HeadLines()  # for the next head

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
            if event is NEED_DATA:
                return NEED_DATA
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return DONE
            raise _bad("unexpected data in the body")


class _HeadLines:
    """Measures the lines of one head as its bytes are handed to h11, before
    h11 parses them (the regexes it parses lines with allocate a few hundred
    bytes per byte of a long status line or spaced header value), and finds
    where the head ends. Linear in the bytes: each byte is looked at once."""

    __slots__ = ("_length", "_number", "_start", "done")

    def __init__(self) -> None:
        self._number = 0  # of the current line, 0 = status line
        self._length = 0  # of the current line so far
        self._start = b""  # its first two bytes
        self.done = False  # the head's empty line has been seen

    def scan(self, data: bytes) -> int:
        """How many bytes of `data` belong to this head (all of them until its
        empty line is seen); refuses a line too long or folded."""
        at = 0
        while at < len(data):
            newline = data.find(b"\n", at)
            stop = len(data) if newline < 0 else newline
            if self._length == 0 and self._number and data[at : at + 1] in (b" ", b"\t"):
                raise _bad("obsolete line folding")
            if len(self._start) < 2:
                self._start = (self._start + data[at : min(stop, at + 2)])[:2]
            self._length += stop - at
            limit = MAX_STATUS_LINE if self._number == 0 else MAX_HEADER_LINE
            if self._length > limit:
                raise _bad(f"a head line over {limit} bytes")
            if newline < 0:
                break
            at = newline + 1
            if self._start in (b"", b"\r") and self._length <= 1:
                self.done = True
                return at
            self._number, self._length, self._start = self._number + 1, 0, b""
        return len(data)


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
