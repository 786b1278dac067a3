"""HTTP/1.1 response framing and bounded decoding, on in-memory streams."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest
from vivified.core.egress import BodyDecoder, Steps
from vivified.core.egress._wire import (
    content_length,
    is_chunked,
    parse_head,
    read_body,
    read_head,
)
from vivified.core.errors import ResourceExhausted, Unavailable, VivifiedError


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=64 * 1024)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def _body(raw: bytes, method: str = "GET") -> bytes:
    reader = _reader(raw)
    steps = Steps(5, 1)
    head = await read_head(reader, steps)
    length = content_length(method, head)
    return b"".join([c async for c in read_body(reader, steps, length, length is None and is_chunked(head))])


@pytest.mark.asyncio
async def test_framings() -> None:
    assert await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA") == b"hello"
    assert await _body(b"HTTP/1.1 200 OK\r\n\r\nuntil close") == b"until close"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n"
    assert await _body(chunked) == b"hello!"
    # Transfer-Encoding wins over Content-Length
    assert await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n") == b"ok"
    assert await _body(b"HTTP/1.1 204 No Content\r\n\r\nignored") == b""
    assert await _body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD") == b""
    assert await _body(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == b"ok"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTP/2 200\r\n\r\n", "bad_response"),
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
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "bad_response"),
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
        await read_head(reader, Steps(5, 0.05))
    assert (caught.value.reason, caught.value.metadata["which"]) == ("EGRESS_TIMEOUT", "idle")
    with pytest.raises(VivifiedError) as total:
        await read_head(_reader(b"", eof=False), Steps(0.05, 5))
    assert total.value.metadata["which"] == "total"


def test_head_values_are_parsed() -> None:
    head = parse_head(b"HTTP/1.0 404 Not Found\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
    assert (head.status, head.reason, head.values("x-a")) == (404, "Not Found", ["1", "2"])


def test_decoding_gzip_members_and_both_deflate_flavours() -> None:
    decoder = BodyDecoder("gzip", 1000)
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decoder.feed(data[:7]) + decoder.feed(data[7:]) + decoder.finish() == b"first second"
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        squeezer = zlib.compressobj(6, zlib.DEFLATED, wbits)
        stream = squeezer.compress(b"deflated body") + squeezer.flush()
        decoder = BodyDecoder("Deflate", 1000)
        assert b"".join(decoder.feed(stream[i : i + 1]) for i in range(len(stream))) + decoder.finish() == b"deflated body"


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
