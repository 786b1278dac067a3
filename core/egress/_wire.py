"""HTTP/1.1 on the wire: the request bytes, the response head, and the body
framing (none, Content-Length, chunked, or until the connection closes).

Every read is one step run under the idle limit and the fetch's absolute
deadline, so a slow-drip upstream cannot hold a fetch open: the head must
arrive within one idle period, and each body read must make progress within
one. Heads are bounded (64 KiB, 100 headers) by the stream reader's limit."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from vivified.core.egress._config import TOKEN
from vivified.core.egress._errors import timed_out, upstream_failed
from vivified.core.egress._url import EgressUrl

T = TypeVar("T")
HEAD_LIMIT = 64 * 1024
MAX_RESPONSE_HEADERS = 100
READ_SIZE = 64 * 1024
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: ([^\r\n]*))?")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
BODYLESS_METHODS = frozenset({"HEAD"})
ACCEPT_ENCODING = "gzip, deflate"


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


def encode_request(method: str, url: EgressUrl, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {url.target} HTTP/1.1", f"Host: {url.authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Accept-Encoding: {ACCEPT_ENCODING}", "Connection: close"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]


def _bad(message: str) -> Exception:
    return upstream_failed(f"the upstream sent an invalid response: {message}", "bad_response")


def parse_head(raw: bytes) -> ResponseHead:
    lines = raw[:-4].split(b"\r\n")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise _bad("status line")
    if len(lines) - 1 > MAX_RESPONSE_HEADERS:
        raise _bad("too many headers")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name.decode("latin-1")) or b"\n" in value or b"\r" in value:
            raise _bad("header line")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return ResponseHead(int(status.group(1)), (status.group(2) or b"").decode("latin-1"), headers)


async def read_head(reader: asyncio.StreamReader, steps: Steps) -> ResponseHead:
    """The final response head, skipping interim 1xx responses (e.g. 103)."""
    for _ in range(5):
        head = parse_head(await steps.run(reader.readuntil(b"\r\n\r\n")))
        if head.status == 101:
            raise _bad("unrequested protocol switch")
        if head.status >= 200:
            return head
    raise _bad("too many interim responses")


def content_length(method: str, head: ResponseHead) -> int | None:
    """The declared body length, 0 for a bodyless response, None when framed
    otherwise (chunked or until close)."""
    if method in BODYLESS_METHODS or head.status in (204, 304):
        return 0
    if head.values("transfer-encoding"):
        return None
    lengths = {v.strip() for value in head.values("content-length") for v in value.split(",")}
    if not lengths:
        return None
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise _bad("conflicting or malformed Content-Length")
    return int(lengths.pop())


def is_chunked(head: ResponseHead) -> bool:
    codings = [c.strip().lower() for value in head.values("transfer-encoding") for c in value.split(",")]
    return bool(codings) and codings[-1] == "chunked"


async def read_body(
    reader: asyncio.StreamReader, steps: Steps, length: int | None, chunked: bool
) -> AsyncIterator[bytes]:
    """The raw (still content-encoded) body, as it arrives."""
    if length is not None:
        remaining = length
        while remaining:
            data = await steps.run(reader.read(min(remaining, READ_SIZE)))
            if not data:
                raise upstream_failed("the upstream closed the connection early", "connection_lost")
            remaining -= len(data)
            yield data
        return
    if not chunked:
        while data := await steps.run(reader.read(READ_SIZE)):
            yield data
        return
    while True:
        line = (await steps.run(reader.readuntil(b"\r\n")))[:-2]
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise _bad("chunk size")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_RESPONSE_HEADERS + 1):
                if await steps.run(reader.readuntil(b"\r\n")) == b"\r\n":
                    return
            raise _bad("too many trailers")
        async for data in read_body(reader, steps, size, False):
            yield data
        if await steps.run(reader.readexactly(2)) != b"\r\n":
            raise _bad("chunk terminator")
