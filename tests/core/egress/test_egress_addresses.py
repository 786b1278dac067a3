"""H1: every resolved address is classified; any non-public one refuses the
fetch. The resolver is injected and nothing connects out."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

import grpc
import pytest

from support.clients import error_info
from vivified.core.egress import (
    AddressPolicy,
    EgressConfig,
    endpoints_from,
    special_purpose,
)
from vivified.core.errors import PermissionDenied

pytestmark = pytest.mark.asyncio

NON_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link_local"),
    ("100.64.0.1", "cgnat"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.5", "documentation"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link_local"),
    ("::a00:1", "ipv4_compatible"),
    ("64:ff9b::a00:1", "nat64_private"),
    ("64:ff9b::7f00:1", "nat64_loopback"),
    ("64:ff9b::a9fe:a9fe", "nat64_link_local"),
    ("64:ff9b:1::a00:1", "nat64_local"),
    ("2002:a00:1::", "6to4"),
    ("2002:5db8:d822::1", "6to4"),
    ("2001::1", "teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("fc00::1", "unique_local"),
    ("fd12:3456::1", "unique_local"),
    ("fe80::1", "link_local"),
    ("fec0::1", "site_local"),
    ("ff02::1", "multicast"),
    ("4000::1", "reserved"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e", "64:ff9b::5db8:d822"]


@pytest.mark.parametrize(("address", "label"), NON_PUBLIC)
async def test_h1_resolved_address_classification(address: str, label: str) -> None:
    assert special_purpose(ipaddress.ip_address(address)) == label
    with pytest.raises(PermissionDenied) as caught:
        AddressPolicy().check([address], 443)
    assert caught.value.reason == "EGRESS_DENIED"
    assert caught.value.metadata["why"] == "address_not_public"
    assert caught.value.metadata["address"] == address
    # one internal address among public ones is enough to refuse
    with pytest.raises(PermissionDenied):
        AddressPolicy().check(["93.184.216.34", address], 443)


@pytest.mark.parametrize("address", PUBLIC)
async def test_public_addresses_pass_classification(address: str) -> None:
    assert special_purpose(ipaddress.ip_address(address)) is None
    assert AddressPolicy().check([address], 443) == [address]


async def test_unparseable_or_empty_answers_are_refused() -> None:
    for answer in (["api.example.com"], ["1.2.3"], [""], []):
        with pytest.raises(PermissionDenied):
            AddressPolicy().check(answer, 443)


async def test_allow_range_admits_only_addresses_inside_it() -> None:
    policy = AddressPolicy(allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),))
    assert policy.check(["127.0.0.1", "::ffff:127.0.0.2"], 443) == ["127.0.0.1", "127.0.0.2"]
    for outside in ("10.0.0.1", "::1", "169.254.169.254"):
        with pytest.raises(PermissionDenied):
            policy.check([outside], 443)


async def test_deny_ranges_and_core_endpoints_win_over_allow_ranges() -> None:
    policy = AddressPolicy(
        allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),),
        deny_ranges=(ipaddress.ip_network("127.0.0.9/32"), ipaddress.ip_network("93.184.216.0/24")),
        own_endpoints=endpoints_from(["127.0.0.1:7443", "[::]:7444"]),
    )
    assert policy.verdict(ipaddress.ip_address("127.0.0.9"), 443) == "deny_range"
    assert policy.verdict(ipaddress.ip_address("93.184.216.34"), 443) == "deny_range"
    assert policy.verdict(ipaddress.ip_address("127.0.0.1"), 7443) == "core_endpoint"
    assert policy.verdict(ipaddress.ip_address("127.0.0.5"), 7444) == "core_endpoint"  # wildcard bind
    assert policy.verdict(ipaddress.ip_address("127.0.0.1"), 443) is None
    assert policy.verdict(ipaddress.ip_address("8.8.8.8"), 7444) is None


async def test_endpoints_from_listen_addresses() -> None:
    assert endpoints_from(["127.0.0.1:7443", "[::]:7444", "0.0.0.0:9464", "localhost:1"]) == {
        (ipaddress.ip_address("127.0.0.1"), 7443),
        (None, 7444),
        (None, 9464),
        (None, 1),
    }


async def test_h1_private_answer_for_an_allowed_name_is_denied_through_the_chain(
    egress: Any, records: Any, resolver: Any, recording_connector: Any, request_for: Any
) -> None:
    dns = resolver({"api.example.com": [["93.184.216.34", "10.0.0.1"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [443])],
        resolver=dns,
        config=EgressConfig(),
        connector=recording_connector,
    )
    async with harness.channel("fetcher") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub(channel).Fetch(request_for("https://api.example.com/x"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert (info.reason, info.domain) == ("EGRESS_DENIED", "vivified.egress")
    assert (info.metadata["why"], info.metadata["address"]) == ("address_not_public", "10.0.0.1")
    assert recording_connector.dialled == []
    rows = harness.rows()
    assert len(rows) == 1
    assert (rows[0].actor, rows[0].decision, rows[0].reason, rows[0].rule_id) == (
        "plugin:fetcher",
        "deny",
        "EGRESS_DENIED",
        "egress",
    )
    detail = harness.details()[0]
    assert (detail["host"], detail["why"]) == ("api.example.com", "address_not_public")


async def test_public_answer_is_dialled_by_address_with_the_host_name_for_tls(
    egress: Any, records: Any, resolver: Any, request_for: Any
) -> None:
    dialled: list[tuple[str, int, str | None]] = []

    async def refusing(address: str, port: int, tls: ssl.SSLContext | None, name: str | None) -> Any:
        dialled.append((address, port, name))
        raise ConnectionRefusedError("no network in tests")

    dns = resolver({"api.example.com": [["93.184.216.34", "2606:4700:4700::1111"]]})
    harness = await egress(
        records=[records("fetcher", ["api.example.com"], [443])],
        resolver=dns,
        config=EgressConfig(),
        connector=refusing,
    )
    async with harness.channel("fetcher") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub(channel).Fetch(request_for("https://api.example.com/"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "EGRESS_UPSTREAM_FAILED"
    assert dialled == [("93.184.216.34", 443, "api.example.com"), ("2606:4700:4700::1111", 443, "api.example.com")]
    assert dns.calls == [("api.example.com", 443)]
    assert [(r.decision, r.outcome, r.reason) for r in harness.rows()] == [
        ("allow", "UNAVAILABLE", "EGRESS_UPSTREAM_FAILED")
    ]


async def test_resolution_failure_is_unavailable(egress: Any, records: Any, resolver: Any, request_for: Any) -> None:
    harness = await egress(records=[records("fetcher", ["api.example.com"], [443])], resolver=resolver({}))
    async with harness.channel("fetcher") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub(channel).Fetch(request_for("https://api.example.com/"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(caught.value)
    assert (info.reason, info.metadata["why"]) == ("EGRESS_UPSTREAM_FAILED", "dns_failed")
    assert len(harness.rows()) == 1


async def test_a_fetch_never_loops_back_into_the_core(
    egress: Any, records: Any, resolver: Any, upstream: Any, request_for: Any, failing_fetch: Any, good_fetch: Any
) -> None:
    dns = resolver({"api.example.com": [["127.0.0.1"]]})
    harness = await egress(records=[records("fetcher", ["api.example.com"], [upstream.port])], resolver=dns)
    url = f"https://api.example.com:{upstream.port}/"
    assert (await good_fetch(harness, "fetcher", request_for(url))).status_code == 200
    # the core learns it listens on the upstream's port: the allow range no longer admits it
    harness.service.listening_on([f"0.0.0.0:{upstream.port}"])
    code, info = await failing_fetch(harness, "fetcher", request_for(url))
    assert (code, info.reason, info.metadata["address_class"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "core_endpoint",
    )
    assert len(upstream.received) == 1 and len(harness.rows()) == 2
