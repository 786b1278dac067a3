"""H2: size and time caps on what an upstream sends back, header filtering in
both directions, and the happy path — all through the real chain against
local HTTPS upstreams on loopback (allow range 127.0.0.0/8)."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import time
import zlib
from typing import Any

import grpc
import pytest

from support.clients import error_info
from vivified.core.egress import EgressConfig
from vivified.egress.v1 import egress_pb2

pytestmark = pytest.mark.asyncio

CAP = 64 * 1024
SMALL = EgressConfig(
    allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),),
    max_response_bytes=CAP,
    max_request_bytes=1024,
    idle_timeout_seconds=0.5,
    total_timeout_seconds=3.0,
)


async def _setup(egress: Any, records: Any, resolver: Any, upstream: Any, config: EgressConfig = SMALL) -> Any:
    dns = resolver({"api.example.com": [["127.0.0.1"]], "api.example.net": [["127.0.0.1"]]})
    record = records("fetcher", ["api.example.com", "api.example.net"], [upstream.port])
    return await egress(records=[record], resolver=dns, config=config)


def _head(writer: asyncio.StreamWriter, *lines: str) -> None:
    writer.write(("\r\n".join(["HTTP/1.1 200 OK", *lines]) + "\r\n\r\n").encode())


def _only_record(harness: Any, outcome: str, reason: str) -> dict[str, str]:
    rows = harness.rows()
    assert len(rows) == 1
    assert (rows[0].outcome, rows[0].reason) == (outcome, reason)
    detail: dict[str, str] = harness.details()[0]
    return detail


async def test_fetch_returns_status_headers_body_and_audits_the_facts(
    egress: Any, records: Any, resolver: Any, upstream: Any, good_fetch: Any, request_for: Any, respond: Any
) -> None:
    async def hello(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 201, b"hello " + request.body, (("X-Kept", "1"),))

    upstream.routes["/hello"] = hello
    harness = await _setup(egress, records, resolver, upstream)
    url = f"https://API.example.com.:{upstream.port}/hello?q=1"
    response = await good_fetch(harness, "fetcher", request_for(url, "POST", body=b"world"))
    assert (response.status_code, response.body, response.resolved_address) == (201, b"hello world", "127.0.0.1")
    assert ("X-Kept", "1") in [(h.name, h.value) for h in response.headers]
    seen = upstream.received[0]
    assert (seen.method, seen.target, seen.server_name) == ("POST", "/hello?q=1", "api.example.com")
    assert seen.header("host") == f"api.example.com:{upstream.port}"
    detail = _only_record(harness, "OK", "")
    assert harness.rows()[0].decision == "allow"
    assert detail == {
        "host": "api.example.com",
        "port": str(upstream.port),
        "hops": "0",
        "address": "127.0.0.1",
        "status": "201",
        "bytes": "11",
    }


async def test_h2_response_limits_huge_declared_body_is_refused_before_reading(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    async def ten_gigabytes(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer, f"Content-Length: {10 * 1024**3}")
        while True:
            writer.write(b"\0" * 65536)
            await writer.drain()

    upstream.routes["/big"] = ten_gigabytes
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/big"))
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_TOO_LARGE")
    assert time.monotonic() - started < 2.0
    _only_record(harness, "RESOURCE_EXHAUSTED", "EGRESS_TOO_LARGE")


async def test_h2_response_limits_undeclared_endless_body_stops_at_the_cap(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    hung_up = asyncio.Event()

    async def endless(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer)  # no length: the body runs until the connection closes
        try:
            while True:
                writer.write(b"x" * 4096)
                await writer.drain()
        finally:
            hung_up.set()

    upstream.routes["/endless"] = endless
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    code, info = await failing_fetch(
        harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/endless")
    )
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_TOO_LARGE")
    assert time.monotonic() - started < 2.0
    # the core hung up on the upstream instead of reading on
    await asyncio.wait_for(hung_up.wait(), 5)
    _only_record(harness, "RESOURCE_EXHAUSTED", "EGRESS_TOO_LARGE")


async def test_h2_response_limits_never_ending_chunked_stream(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    async def chunks_forever(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer, "Transfer-Encoding: chunked")
        while True:
            writer.write(b"400\r\n" + b"c" * 1024 + b"\r\n")
            await writer.drain()

    upstream.routes["/chunks"] = chunks_forever
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/chunks"))
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_TOO_LARGE")
    assert time.monotonic() - started < 2.0
    _only_record(harness, "RESOURCE_EXHAUSTED", "EGRESS_TOO_LARGE")


async def test_h2_response_limits_slow_drip_hits_the_idle_timeout(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    async def drip(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer, "Content-Length: 100")
        while True:
            writer.write(b"d")
            await writer.drain()
            await asyncio.sleep(10)

    upstream.routes["/drip"] = drip
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/drip"))
    assert (code, info.reason, info.metadata["which"]) == (grpc.StatusCode.DEADLINE_EXCEEDED, "EGRESS_TIMEOUT", "idle")
    assert time.monotonic() - started < 2.0
    assert _only_record(harness, "DEADLINE_EXCEEDED", "EGRESS_TIMEOUT")["why"] == "idle"


async def test_h2_response_limits_steady_trickle_hits_the_total_timeout(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    async def trickle(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer, "Transfer-Encoding: chunked")
        while True:  # always inside the idle limit, never finished
            writer.write(b"1\r\nt\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    upstream.routes["/trickle"] = trickle
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    request = request_for(f"https://api.example.com:{upstream.port}/trickle")
    request.timeout.FromMilliseconds(1000)  # shorter than the core's 3 s: the request's wins
    code, info = await failing_fetch(harness, "fetcher", request)
    assert (code, info.reason, info.metadata["which"]) == (grpc.StatusCode.DEADLINE_EXCEEDED, "EGRESS_TIMEOUT", "total")
    assert 0.9 < time.monotonic() - started < 2.5
    _only_record(harness, "DEADLINE_EXCEEDED", "EGRESS_TIMEOUT")


async def test_h2_response_limits_gzip_bomb_stops_at_the_cap(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = squeezer.compress(b"\0" * (256 * 1024 * 1024)) + squeezer.flush()  # 256 MiB → ~250 KiB
    assert len(bomb) < 512 * 1024

    async def gzip_bomb(request: Any, writer: asyncio.StreamWriter) -> None:
        _head(writer, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}")
        writer.write(bomb)
        await writer.drain()

    upstream.routes["/bomb"] = gzip_bomb
    harness = await _setup(egress, records, resolver, upstream)
    started = time.monotonic()
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/bomb"))
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_TOO_LARGE")
    assert time.monotonic() - started < 2.0
    _only_record(harness, "RESOURCE_EXHAUSTED", "EGRESS_TOO_LARGE")


async def test_compressed_bodies_are_decoded_within_the_cap(
    egress: Any, records: Any, resolver: Any, upstream: Any, good_fetch: Any, request_for: Any, respond: Any
) -> None:
    text = b"compressible " * 2000
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)

    async def gzipped(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, gzip.compress(text), (("Content-Encoding", "gzip"),))

    async def deflated(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, raw_deflate.compress(text) + raw_deflate.flush(), (("Content-Encoding", "deflate"),))

    async def brotli(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, b"\x8b\x02\x80opaque", (("Content-Encoding", "br"),))

    upstream.routes.update({"/gz": gzipped, "/deflate": deflated, "/br": brotli})
    harness = await _setup(egress, records, resolver, upstream)
    for path in ("/gz", "/deflate"):
        response = await good_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}{path}"))
        assert response.body == text
        assert not {h.name.lower() for h in response.headers} & {"content-encoding", "content-length"}
    passthrough = await good_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/br"))
    assert passthrough.body == b"\x8b\x02\x80opaque"
    assert ("Content-Encoding", "br") in [(h.name, h.value) for h in passthrough.headers]
    assert upstream.received[0].header("accept-encoding") == "gzip, deflate"


async def test_h2_request_headers_not_forwarded(
    egress: Any, records: Any, resolver: Any, upstream: Any, good_fetch: Any, request_for: Any
) -> None:
    harness = await _setup(egress, records, resolver, upstream)
    sent = (
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Cookie", "session=plugin"),
        ("Cookie2", "x"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "websocket"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Connection", "keep-alive"),
        ("Host", "169.254.169.254"),
        ("Content-Length", "999"),
        ("Expect", "100-continue"),
        ("Accept-Encoding", "br"),
        ("X-Vivified-Actor", "operator:admin"),
        ("X-Custom", "yes"),
        ("Authorization", "Bearer plugin-token"),
    )
    await good_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/", headers=sent))
    seen = upstream.received[0]
    assert not seen.names() & {
        "proxy-authorization",
        "cookie",
        "cookie2",
        "x-hop",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "transfer-encoding",
        "proxy-connection",
        "expect",
        "x-vivified-actor",
    }
    assert seen.header("host") == f"api.example.com:{upstream.port}"
    assert (seen.header("connection"), seen.header("accept-encoding")) == ("close", "gzip, deflate")
    assert (seen.header("x-custom"), seen.header("authorization")) == ("yes", "Bearer plugin-token")
    assert seen.header("content-length") is None and seen.body == b""


async def test_h2_upstream_internal_and_hop_by_hop_headers_stripped(
    egress: Any, records: Any, resolver: Any, upstream: Any, good_fetch: Any, request_for: Any, respond: Any
) -> None:
    async def noisy(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(
            writer,
            200,
            b"ok",
            (
                ("X-Vivified-Actor", "core:core"),
                ("X-Vivified-Error", "forged"),
                ("Connection", "close, X-Private-Hop"),
                ("X-Private-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authenticate", "Basic"),
                ("Set-Cookie", "a=b"),
                ("X-Kept", "yes"),
            ),
        )

    upstream.routes["/noisy"] = noisy
    harness = await _setup(egress, records, resolver, upstream)
    response = await good_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/noisy"))
    names = {h.name.lower() for h in response.headers}
    assert {"set-cookie", "x-kept", "content-length"} <= names
    assert not names & {
        "x-vivified-actor",
        "x-vivified-error",
        "connection",
        "x-private-hop",
        "keep-alive",
        "proxy-authenticate",
    }


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", (("X-Evil", "a\r\nHost: 169.254.169.254"),)),
        ("GET", (("X-Evil", "a\nb"),)),
        ("GET", (("X Bad", "1"),)),
        ("GET", (("X-Bad:", "1"),)),
        ("GET", (("X-Utf8", "caf\u00e9"),)),
        ("CONNECT", ()),
        ("TRACE", ()),
        ("get", ()),
        ("", ()),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", ()),
    ],
)
async def test_request_injection_is_invalid(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    failing_fetch: Any,
    request_for: Any,
    method: str,
    headers: tuple[tuple[str, str], ...],
) -> None:
    harness = await _setup(egress, records, resolver, upstream)
    code, info = await failing_fetch(
        harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/", method, headers=headers)
    )
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert upstream.received == []
    _only_record(harness, "INVALID_ARGUMENT", "INVALID_REQUEST")


async def test_request_body_over_the_cap_is_refused_before_connecting(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    harness = await _setup(egress, records, resolver, upstream)
    code, info = await failing_fetch(
        harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/", "POST", body=b"b" * 1025)
    )
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_TOO_LARGE")
    assert upstream.received == []
    _only_record(harness, "RESOURCE_EXHAUSTED", "EGRESS_TOO_LARGE")


async def test_tls_verifies_the_url_host_name_not_the_address(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    harness = await _setup(egress, records, resolver, upstream)
    # api.example.net resolves to the same server, whose certificate does not name it
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.net:{upstream.port}/"))
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.UNAVAILABLE,
        "EGRESS_UPSTREAM_FAILED",
        "tls_verify_failed",
    )
    _only_record(harness, "UNAVAILABLE", "EGRESS_UPSTREAM_FAILED")


async def test_stream_fetch_streams_a_large_body_and_stops_at_the_cap(
    egress: Any, records: Any, resolver: Any, upstream: Any, request_for: Any, respond: Any
) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB

    async def large(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, big)

    upstream.routes["/large"] = large
    config = EgressConfig(allow_ranges=SMALL.allow_ranges, max_response_bytes=len(big), idle_timeout_seconds=1)
    harness = await _setup(egress, records, resolver, upstream, config)
    async with harness.channel("fetcher") as channel:
        stub = harness.stub(channel)
        url = f"https://api.example.com:{upstream.port}/large"
        parts = [p async for p in stub.StreamFetch(egress_pb2.StreamFetchRequest(request=request_for(url)), timeout=20)]
        assert parts[0].WhichOneof("part") == "head" and parts[0].head.status_code == 200
        assert all(p.WhichOneof("part") == "body_chunk" and len(p.body_chunk) <= 65536 for p in parts[1:])
        assert b"".join(p.body_chunk for p in parts[1:]) == big
        assert {"bytes": str(len(big))} in harness.notes
        big += b"!"  # one byte over the cap
        chunks = 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for part in stub.StreamFetch(egress_pb2.StreamFetchRequest(request=request_for(url)), timeout=20):
                chunks += part.WhichOneof("part") == "body_chunk"
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert chunks < 5
    assert len(harness.rows()) == 2  # one record per stream


async def test_stream_fetch_applies_the_same_checks(
    egress: Any, records: Any, resolver: Any, upstream: Any, request_for: Any
) -> None:
    harness = await _setup(egress, records, resolver, upstream)
    async with harness.channel("fetcher") as channel:
        stream = harness.stub(channel).StreamFetch(
            egress_pb2.StreamFetchRequest(request=request_for(f"https://files.example.org:{upstream.port}/")),
            timeout=20,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert (info.reason, info.metadata["why"]) == ("EGRESS_DENIED", "host_not_allowed")
    assert upstream.received == []
    assert len(harness.rows()) == 1
