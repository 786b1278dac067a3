"""DNS rebinding and redirects: the core dials only the address it checked,
and every redirect hop is parsed, allowlisted and address-checked again."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import grpc
import pytest

from vivified.core.egress import EgressConfig

pytestmark = pytest.mark.asyncio

LOOPBACK = EgressConfig(allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),), max_redirects=2)


def _redirect(respond: Any, status: int, location: str) -> Any:
    async def handler(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, status, b"moved", (("Location", location),))

    return handler


async def test_dns_rebinding_the_core_dials_only_the_address_it_checked(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream_factory: Any,
    recording_connector: Any,
    good_fetch: Any,
    failing_fetch: Any,
    request_for: Any,
) -> None:
    server = await upstream_factory(host="127.0.0.2")
    # Only 127.0.0.2 is admitted; the name "rebinds" to 127.0.0.1 on the next lookup.
    dns = resolver({"api.example.com": [["127.0.0.2"], ["127.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [server.port])],
        resolver=dns,
        config=EgressConfig(allow_ranges=(ipaddress.ip_network("127.0.0.2/32"),)),
        connector=recording_connector,
    )
    url = f"https://api.example.com:{server.port}/"
    response = await good_fetch(harness, "fetcher", request_for(url))
    assert (response.status_code, response.resolved_address) == (200, "127.0.0.2")
    assert recording_connector.dialled == [("127.0.0.2", server.port, "api.example.com")]
    assert server.received[0].local_address == "127.0.0.2"
    assert server.received[0].server_name == "api.example.com"
    assert len(dns.calls) == 1  # one lookup per fetch; the connection never resolves again

    code, info = await failing_fetch(harness, "fetcher", request_for(url))
    assert (code, info.reason, info.metadata["why"], info.metadata["address"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "address_not_public",
        "127.0.0.1",
    )
    assert len(recording_connector.dialled) == 1
    assert [(r.decision, r.reason) for r in harness.rows()] == [("allow", ""), ("deny", "EGRESS_DENIED")]


async def test_redirect_to_a_private_address_is_refused(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    recording_connector: Any,
    respond: Any,
    failing_fetch: Any,
    request_for: Any,
) -> None:
    upstream.routes["/r"] = _redirect(respond, 302, f"https://internal.example.com:{upstream.port}/admin")
    dns = resolver({"api.example.com": [["127.0.0.1"]], "internal.example.com": [["10.0.0.5"]]})
    harness = await egress(
        records=[records("fetcher", ["*.example.com"], [upstream.port])],
        resolver=dns,
        config=LOOPBACK,
        connector=recording_connector,
    )
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/r"))
    assert (code, info.reason, info.metadata["why"], info.metadata["address"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "address_not_public",
        "10.0.0.5",
    )
    assert [d[0] for d in recording_connector.dialled] == ["127.0.0.1"]
    rows = harness.rows()
    assert len(rows) == 1 and (rows[0].decision, rows[0].rule_id) == ("deny", "egress")
    detail = harness.details()[0]
    assert (detail["host"], detail["hops"], detail["why"]) == ("internal.example.com", "1", "address_not_public")


@pytest.mark.parametrize(
    ("location", "code", "reason", "why"),
    [
        ("https://evil.example.org:{port}/", grpc.StatusCode.PERMISSION_DENIED, "EGRESS_DENIED", "host_not_allowed"),
        (
            "https://api.example.com.evil.org:{port}/",
            grpc.StatusCode.PERMISSION_DENIED,
            "EGRESS_DENIED",
            "host_not_allowed",
        ),
        ("https://127.0.0.1:{port}/", grpc.StatusCode.PERMISSION_DENIED, "EGRESS_DENIED", "host_not_allowed"),
        (
            "https://169.254.169.254/latest/meta-data/",
            grpc.StatusCode.INVALID_ARGUMENT,
            "EGRESS_URL_INVALID",
            "ip_literal",
        ),
        ("https://api.example.com:1/", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "port_not_allowed"),
        ("http://api.example.com/", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "port_not_allowed"),
        ("file:///etc/passwd", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "scheme"),
        ("https://allowed.com@127.0.0.1:{port}/", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "userinfo"),
        # urljoin raised ValueError on these (found by the J6 URL fuzz test): an upstream got an INTERNAL
        ("https://[::1/", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "host_invalid"),
        ("//[api.example.com/x", grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID", "host_invalid"),
    ],
)
async def test_redirect_to_a_disallowed_target_is_refused(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    respond: Any,
    failing_fetch: Any,
    request_for: Any,
    location: str,
    code: grpc.StatusCode,
    reason: str,
    why: str,
) -> None:
    upstream.routes["/r"] = _redirect(respond, 301, location.format(port=upstream.port))
    dns = resolver({"api.example.com": [["127.0.0.1"]], "evil.example.org": [["127.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [upstream.port])], resolver=dns, config=LOOPBACK
    )
    got_code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/r"))
    assert (got_code, info.reason, info.metadata["why"]) == (code, reason, why)
    assert [r.target for r in upstream.received] == ["/r"]
    assert len(harness.rows()) == 1


async def test_redirect_chain_longer_than_the_limit_is_refused(
    egress: Any, records: Any, resolver: Any, upstream: Any, respond: Any, failing_fetch: Any, request_for: Any
) -> None:
    upstream.routes["/loop"] = _redirect(respond, 302, "/loop")
    dns = resolver({"api.example.com": [["127.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [upstream.port])], resolver=dns, config=LOOPBACK
    )
    code, info = await failing_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/loop"))
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "too_many_redirects",
    )
    assert len(upstream.received) == 3  # the request and max_redirects=2 hops, no more
    assert len(harness.rows()) == 1 and harness.rows()[0].decision == "deny"


async def test_allowed_redirects_are_followed_with_the_right_method_and_headers(
    egress: Any, records: Any, resolver: Any, upstream: Any, respond: Any, good_fetch: Any, request_for: Any
) -> None:
    port = upstream.port
    upstream.routes["/keep"] = _redirect(respond, 307, "/kept")
    upstream.routes["/see-other"] = _redirect(respond, 303, f"https://files.example.org:{port}/other")
    dns = resolver({"api.example.com": [["127.0.0.1"]], "files.example.org": [["127.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com", "files.example.org"], [port])],
        resolver=dns,
        config=LOOPBACK,
    )
    headers = (("Authorization", "Bearer plugin-token"), ("Content-Type", "application/json"))
    kept = await good_fetch(
        harness, "fetcher", request_for(f"https://api.example.com:{port}/keep", "POST", headers=headers, body=b"{}")
    )
    assert kept.status_code == 200
    first, second = upstream.received[0], upstream.received[1]
    assert (first.method, first.target, second.method, second.target, second.body) == (
        "POST",
        "/keep",
        "POST",
        "/kept",
        b"{}",
    )
    assert second.header("authorization") == "Bearer plugin-token"  # same host: kept

    other = await good_fetch(
        harness,
        "fetcher",
        request_for(f"https://api.example.com:{port}/see-other", "POST", headers=headers, body=b"{}"),
    )
    assert other.status_code == 200
    hop = upstream.received[3]
    assert (hop.method, hop.target, hop.body, hop.server_name) == ("GET", "/other", b"", "files.example.org")
    assert hop.header("authorization") is None  # another host: the plugin's token does not follow
    assert hop.header("content-type") is None and hop.header("content-length") is None
    assert harness.details()[-1]["hops"] == "1" and harness.details()[-1]["host"] == "files.example.org"


async def test_a_redirect_without_location_is_returned_as_is(
    egress: Any, records: Any, resolver: Any, upstream: Any, respond: Any, good_fetch: Any, request_for: Any
) -> None:
    async def bare(request: Any, writer: asyncio.StreamWriter) -> None:
        await respond(writer, 302, b"nowhere")

    upstream.routes["/bare"] = bare
    dns = resolver({"api.example.com": [["127.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [upstream.port])], resolver=dns, config=LOOPBACK
    )
    response = await good_fetch(harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/bare"))
    assert (response.status_code, response.body) == (302, b"nowhere")
