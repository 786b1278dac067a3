"""J6: the egress client's HTTP response parsing (h11 behind ResponseParser,
then the bounded BodyDecoder) under random and mutated upstream bytes.

Whatever an upstream sends, in whatever pieces, the exchange ends in exactly
one of: a head and a body within the cap, EGRESS_UPSTREAM_FAILED (bad_response,
connection_lost, bad_encoding) or EGRESS_TOO_LARGE — never another
exception, never a loop without progress, within one second and a bounded
allocation per input; and how the bytes were split never changes the result.
The corpus in tests/fuzz_corpus/http_response is replayed on every run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.fuzz import bounded, corpus, fuzz_settings, inputs, tracing
from vivified.core.egress import BodyDecoder, parse_url
from vivified.core.egress._wire import DONE, NEED_DATA, ResponseHead, ResponseParser
from vivified.core.errors import ResourceExhausted, Unavailable

# a failing example of 70 kB makes hypothesis warn about its repr; show the failure instead
pytestmark = [pytest.mark.serial, pytest.mark.filterwarnings("ignore:Generating overly large repr")]
URL = parse_url("https://api.example.com/x", allowed_ports=frozenset({443}))
CAP = 64 * 1024
UPSTREAM_FAILURES = {"bad_response", "connection_lost", "bad_encoding"}
MAX_PEAK = 4 * 1024 * 1024  # per input, beyond a copy or two of the input itself
Outcome = tuple[str, object, bytes]


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _exchange(data: bytes, cuts: list[int], method: str) -> Outcome:
    """Feed `data` in pieces, then the end of the stream, as HttpClient does."""
    parser = ResponseParser()
    parser.request(method, URL, [], b"")
    head: ResponseHead | None = None
    decoder: BodyDecoder | None = None
    body = bytearray()
    steps = 0
    try:
        for piece in [*_pieces(data, cuts), b""]:
            parser.feed(piece)
            while True:
                steps += 1
                assert steps <= len(data) + 64, "the parser stopped making progress"
                if head is None or decoder is None:
                    head = parser.head()
                    if head is None:
                        break
                    length = parser.declared_length()
                    decoder = BodyDecoder(",".join(head.values("content-encoding")), CAP)
                    if length is not None and length > decoder.raw_limit:
                        return ("too_large", head.status, b"")
                    continue
                out = parser.body()
                if out is NEED_DATA:
                    break
                if out is DONE:
                    body += decoder.finish()
                    return ("done", (head.status, tuple(head.headers)), bytes(body))
                body += decoder.feed(out)
    except Unavailable as exc:
        assert exc.reason == "EGRESS_UPSTREAM_FAILED" and exc.metadata["why"] in UPSTREAM_FAILURES, exc
        return ("refused", exc.metadata["why"], b"")
    except ResourceExhausted as exc:
        assert exc.reason == "EGRESS_TOO_LARGE"
        return ("too_large", None, b"")
    raise AssertionError("the stream ended without a response, a refusal or a cap")


def _check(data: bytes, cuts: list[int], method: str) -> Outcome:
    outcome = bounded(lambda: _exchange(data, cuts, method), max_bytes=MAX_PEAK + 2 * len(data))
    kind, head, body = outcome
    if kind == "done":
        status, headers = head  # type: ignore[misc]
        assert 200 <= status <= 999 and len(headers) <= 100
        assert len(body) <= CAP
        if method == "HEAD" or status in (204, 304):
            assert body == b""
    # The pieces an upstream's bytes arrive in never change the outcome.
    assert _exchange(data, [], method) == outcome
    return outcome


@pytest.mark.parametrize(("name", "data"), corpus("http_response"), ids=lambda v: v if isinstance(v, str) else "")
def test_j6_http_response_corpus_replays(name: str, data: bytes) -> None:
    with tracing():
        for method in ("GET", "HEAD"):
            for cuts in ([], [1], list(range(0, len(data), max(7, len(data) // 500)))):
                _check(data, cuts, method)


def test_j6_http_response_corpus_outcomes_pinned() -> None:
    """A few seeds' outcomes, so a parser change that accepts what it refused shows."""
    seeds = dict(corpus("http_response"))
    expected = {
        "content-length-extra.http": "done",
        "chunked-trailers.http": "done",
        "early-hints.http": "done",
        "gzip-chunked.http": "done",
        "switching-protocols.http": "refused",
        "conflicting-lengths.http": "refused",
        "bad-chunk-footer.http": "refused",
        "oversized-head.http": "refused",
        "interim-flood.http": "refused",
        "many-headers.http": "refused",
        "huge-length.http": "too_large",
        "gzip-bomb-small.http": "too_large",
        "http2-status.http": "refused",
        "te-gzip.http": "refused",
        "truncated-head.http": "refused",
        "long-reason.http": "refused",
        "folded-flood.http": "refused",
        "trailer-flood.http": "refused",
        "folded-header.http": "refused",
        "spaced-header-value.http": "done",
        "tiny-chunks.http": "done",
        "long-chunk-extension.http": "refused",
        "trailers-small.http": "done",
    }
    got = {name: _exchange(seeds[name], [], "GET")[0] for name in expected}
    assert got == expected
    assert _exchange(seeds["chunked-trailers.http"], [3, 40], "GET")[2] == b"hello!"


@pytest.mark.parametrize(
    "name",
    ["long-reason.http", "spaced-header-value.http", "folded-flood.http", "header-flood.http", "trailer-flood.http"],
)
def test_j6_http_response_heads_cannot_amplify_memory(name: str) -> None:
    # h11's line regexes allocate a few hundred bytes per byte of a long status line or
    # spaced header value (a 70 KB reason phrase took 20 MB); the parser's window and line
    # limits keep any input under 4 MiB at its peak.
    data = dict(corpus("http_response"))[name]
    with tracing():
        for cuts in ([], list(range(0, len(data), 1500))):
            bounded(lambda: _exchange(data, cuts, "GET"), max_bytes=4 * 1024 * 1024)


@fuzz_settings(max_examples=300)
@given(
    data=inputs("http_response"),
    cuts=st.lists(st.integers(0, 1 << 17), max_size=6),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
)
def test_j6_http_response_parser_fuzz(data: bytes, cuts: list[int], method: str) -> None:
    with tracing():
        _check(data, cuts, method)
