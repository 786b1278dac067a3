"""HTTP/1.1 response framing (h11 behind ResponseParser) and bounded decoding, on in-memory streams."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from vivified.core.egress import BodyDecoder, Steps, parse_url
from vivified.core.egress._wire import ResponseParser, read_body, read_head
from vivified.core.errors import InvalidArgument, ResourceExhausted, Unavailable, VivifiedError

URL = parse_url("https://api.example.com/x", allowed_ports=frozenset({443}))


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=64 * 1024)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def _parser(method: str = "GET") -> ResponseParser:
    parser = ResponseParser()
    parser.request(method, URL, [], b"")
    return parser


async def _body(raw: bytes, method: str = "GET") -> bytes:
    reader = _reader(raw)
    steps = Steps(5, 1)
    parser = _parser(method)
    await read_head(parser, reader, steps)
    return b"".join([c async for c in read_body(parser, reader, steps)])


@pytest.mark.asyncio
async def test_framings() -> None:
    assert await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA") == b"hello"
    assert await _body(b"HTTP/1.1 200 OK\r\n\r\nuntil close") == b"until close"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n"
    assert await _body(chunked) == b"hello!"
    # Transfer-Encoding wins over Content-Length
    assert (
        await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        == b"ok"
    )
    assert await _body(b"HTTP/1.1 204 No Content\r\n\r\nignored") == b""
    assert await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD") == b""
    assert (
        await _body(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        == b"ok"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTP/2 200\r\n\r\n", "bad_response"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 099 Low\r\n\r\n", "bad_response"),
        (b"ICY 200 OK\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\n folded: yes\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "connection_lost"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", "bad_response"),
        # h11 reads chunk sizes of up to 20 hex digits; a longer one is refused (a huge size
        # that parses is still bounded by the body cap, see test_h2_... in test_egress_response_limits)
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 21 + b"\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nbody", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 66000 + b"\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 103 Early\r\n\r\n" * 5 + b"HTTP/1.1 200 OK\r\n\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "connection_lost"),
    ],
)
async def test_malformed_responses_are_upstream_failures(raw: bytes, why: str) -> None:
    with pytest.raises(Unavailable) as caught:
        await _body(raw)
    assert (caught.value.reason, caught.value.metadata["why"]) == ("EGRESS_UPSTREAM_FAILED", why)


@pytest.mark.asyncio
async def test_a_silent_upstream_times_out() -> None:
    reader = _reader(b"HTTP/1.1 200 OK\r\n", eof=False)
    with pytest.raises(VivifiedError) as caught:
        await read_head(_parser(), reader, Steps(5, 0.05))
    assert (caught.value.reason, caught.value.metadata["which"]) == ("EGRESS_TIMEOUT", "idle")
    with pytest.raises(VivifiedError) as total:
        await read_head(_parser(), _reader(b"", eof=False), Steps(0.05, 5))
    assert total.value.metadata["which"] == "total"


def test_head_values_are_parsed() -> None:
    parser = _parser()
    parser.feed(b"HTTP/1.0 404 Not Found\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
    head = parser.head()
    assert head is not None
    assert (head.status, head.reason, head.values("x-a")) == (404, "Not Found", ["1", "2"])
    assert ("X-A", "1") in head.headers  # names keep the upstream's case


def test_declared_length_and_head_refusals() -> None:
    parser = _parser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n")
    assert parser.head() is not None and parser.declared_length() == 7
    parser = _parser("HEAD")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
    assert parser.head() is not None and parser.declared_length() == 0
    parser = _parser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n")
    assert parser.head() is not None and parser.declared_length() is None


def test_request_bytes_and_refused_requests() -> None:
    parser = ResponseParser()
    wire = parser.request("POST", URL, [("X-A", "1")], b"hi")
    assert wire == (
        b"POST /x HTTP/1.1\r\nHost: api.example.com\r\nX-A: 1\r\nAccept-Encoding: gzip, deflate\r\n"
        b"Connection: close\r\nContent-Length: 2\r\n\r\nhi"
    )
    for headers in ([("X-Evil", "a\r\nHost: evil")], [("Bad Name", "1")], [("X-Utf8", "caf\u00e9")]):
        with pytest.raises(InvalidArgument) as caught:
            ResponseParser().request("GET", URL, headers, b"")
        assert caught.value.reason == "INVALID_REQUEST"


def test_decoding_gzip_members_and_both_deflate_flavours() -> None:
    decoder = BodyDecoder("gzip", 1000)
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decoder.feed(data[:7]) + decoder.feed(data[7:]) + decoder.finish() == b"first second"
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        squeezer = zlib.compressobj(6, zlib.DEFLATED, wbits)
        stream = squeezer.compress(b"deflated body") + squeezer.flush()
        decoder = BodyDecoder("Deflate", 1000)
        assert (
            b"".join(decoder.feed(stream[i : i + 1]) for i in range(len(stream))) + decoder.finish() == b"deflated body"
        )


def test_decompression_bomb_never_produces_more_than_the_cap() -> None:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = squeezer.compress(b"\0" * (64 * 1024 * 1024)) + squeezer.flush()
    decoder = BodyDecoder("gzip", 4096)
    out = bytearray()
    with pytest.raises(ResourceExhausted) as caught:
        for start in range(0, len(bomb), 8192):
            out += decoder.feed(bomb[start : start + 8192])
    assert caught.value.reason == "EGRESS_TOO_LARGE"
    assert len(out) <= 4096 and decoder.produced <= 4097


def test_undecoded_bodies_count_raw_bytes_and_corrupt_ones_fail() -> None:
    passthrough = BodyDecoder("br", 10)
    assert passthrough.feed(b"0123456789") == b"0123456789"
    with pytest.raises(ResourceExhausted):
        passthrough.feed(b"!")
    with pytest.raises(Unavailable) as caught:
        BodyDecoder("gzip", 100).feed(b"not gzip at all")
    assert caught.value.metadata["why"] == "bad_encoding"
    one_byte = BodyDecoder("deflate", 100)
    assert one_byte.feed(b"x") == b""
    with pytest.raises(Unavailable):
        one_byte.finish()
