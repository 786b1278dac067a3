"""Per-plugin rules: the external_service trait, allowlists that never admit
another plugin, credential injection the plugin never sees, report-only
rollout, and per-plugin rate and concurrency limits."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from typing import Any

import grpc
import pytest

from vivified.core.chain import Principal
from vivified.core.egress import CredentialRule, EgressConfig, EgressService
from vivified.core.errors import PermissionDenied
from vivified.egress.v1 import egress_pb2

pytestmark = pytest.mark.asyncio

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
CANARY = "canary-secret-6f1d2c9a"


def _dns(resolver: Any) -> Any:
    return resolver(
        {
            "api.example.com": [["127.0.0.1"]],
            "files.example.org": [["127.0.0.1"]],
            "other.example.com": [["127.0.0.1"]],
            "private.example.com": [["10.0.0.7"]],
        }
    )


async def test_plugin_without_external_service_is_denied(
    egress: Any, records: Any, resolver: Any, upstream: Any, failing_fetch: Any, request_for: Any
) -> None:
    harness = await egress(records=[records("plain", [], [], traits=())], resolver=_dns(resolver))
    code, info = await failing_fetch(harness, "plain", request_for(f"https://api.example.com:{upstream.port}/"))
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "trait_missing",
    )
    rows = harness.rows()
    assert len(rows) == 1 and (rows[0].actor, rows[0].decision, rows[0].rule_id) == ("plugin:plain", "deny", "egress")
    assert upstream.received == []


async def test_plugin_a_allowlist_does_not_admit_plugin_b(
    egress: Any, records: Any, resolver: Any, upstream: Any, good_fetch: Any, failing_fetch: Any, request_for: Any
) -> None:
    harness = await egress(
        records=[
            records("plugin-a", ["api.example.com"], [upstream.port]),
            records("plugin-b", ["files.example.org"], [upstream.port]),
        ],
        resolver=_dns(resolver),
    )
    url = f"https://api.example.com:{upstream.port}/"
    assert (await good_fetch(harness, "plugin-a", request_for(url))).status_code == 200
    code, info = await failing_fetch(harness, "plugin-b", request_for(url))
    assert (code, info.reason, info.metadata["why"], info.metadata["host"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "host_not_allowed",
        "api.example.com",
    )
    code, info = await failing_fetch(harness, "plugin-a", request_for(f"https://files.example.org:{upstream.port}/"))
    assert info.metadata["why"] == "host_not_allowed"
    assert [(r.actor, r.decision) for r in harness.rows()] == [
        ("plugin:plugin-a", "allow"),
        ("plugin:plugin-b", "deny"),
        ("plugin:plugin-a", "deny"),
    ]
    assert len(upstream.received) == 1


async def test_credential_injection_the_plugin_never_sees_the_secret(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    upstream_factory: Any,
    good_fetch: Any,
    request_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = await upstream_factory(tls=False)
    config = EgressConfig(
        allow_ranges=LOOPBACK,
        credentials=(CredentialRule("fetcher", "*.example.com", "X-Api-Key", "EGRESS_TEST_KEY"),),
    )
    harness = await egress(
        records=[
            records("fetcher", ["api.example.com", "other.example.com"], [upstream.port, plain.port]),
            records("bystander", ["api.example.com"], [upstream.port]),
        ],
        resolver=_dns(resolver),
        config=config,
        environ={"EGRESS_TEST_KEY": CANARY},
    )
    spoofed = (("x-api-key", "plugin-chosen"), ("X-Other", "1"))
    response = await good_fetch(
        harness, "fetcher", request_for(f"https://api.example.com:{upstream.port}/", headers=spoofed)
    )
    seen = upstream.received[0]
    assert [v for n, v in seen.headers if n.lower() == "x-api-key"] == [CANARY]  # replaces the plugin's value
    assert seen.header("x-other") == "1"
    # another plugin fetching the same host gets no credential
    await good_fetch(harness, "bystander", request_for(f"https://api.example.com:{upstream.port}/"))
    assert upstream.received[1].header("x-api-key") is None
    # a credential never goes over plaintext http
    await good_fetch(harness, "fetcher", request_for(f"http://other.example.com:{plain.port}/"))
    assert plain.received[0].header("x-api-key") is None
    assert harness.details()[0]["credential"] == "X-Api-Key"
    assert harness.details()[2]["credential"] == "withheld_plaintext"
    # the canary is nowhere the plugin or the audit log can see it, nor in logs
    assert CANARY.encode() not in response.SerializeToString()
    assert CANARY not in repr([tuple(row) for row in harness.rows()])
    assert CANARY not in repr(harness.notes)
    assert CANARY not in caplog.text


async def test_report_only_allows_a_new_host_but_never_a_private_address(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    good_fetch: Any,
    failing_fetch: Any,
    request_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EgressConfig(allow_ranges=LOOPBACK, report_only_plugins=frozenset({"rollout"}))
    harness = await egress(
        records=[
            records("rollout", ["api.example.com"], [upstream.port]),
            records("strict", ["api.example.com"], [upstream.port]),
        ],
        resolver=_dns(resolver),
        config=config,
    )
    with caplog.at_level(logging.WARNING):
        response = await good_fetch(harness, "rollout", request_for(f"https://other.example.com:{upstream.port}/"))
    assert response.status_code == 200
    assert "report-only" in caplog.text and "other.example.com" in caplog.text
    assert harness.details()[0]["would_deny"] == "host_not_allowed"
    assert harness.rows()[0].decision == "allow"

    code, info = await failing_fetch(harness, "rollout", request_for(f"https://private.example.com:{upstream.port}/"))
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "address_not_public",
    )
    code, info = await failing_fetch(harness, "rollout", request_for("https://other.example.com:8443/"))
    assert (code, info.metadata["why"]) == (grpc.StatusCode.INVALID_ARGUMENT, "port_not_allowed")
    # report-only is per plugin: another plugin is still enforced
    code, info = await failing_fetch(harness, "strict", request_for(f"https://other.example.com:{upstream.port}/"))
    assert info.metadata["why"] == "host_not_allowed"
    assert [r.decision for r in harness.rows()] == ["allow", "deny", "allow", "deny"]
    assert len(upstream.received) == 1


async def test_per_plugin_rate_limit(
    egress: Any,
    records: Any,
    resolver: Any,
    upstream: Any,
    good_fetch: Any,
    failing_fetch: Any,
    request_for: Any,
    clock: Any,
) -> None:
    config = EgressConfig(allow_ranges=LOOPBACK, per_plugin_rate_per_second=1.0, per_plugin_burst=2)
    harness = await egress(
        records=[
            records("busy", ["api.example.com"], [upstream.port]),
            records("calm", ["api.example.com"], [upstream.port]),
        ],
        resolver=_dns(resolver),
        config=config,
    )
    url = f"https://api.example.com:{upstream.port}/"
    for _ in range(2):
        await good_fetch(harness, "busy", request_for(url))
    code, info = await failing_fetch(harness, "busy", request_for(url))
    assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    await good_fetch(harness, "calm", request_for(url))  # another plugin's bucket is its own
    clock.advance(1.0)
    await good_fetch(harness, "busy", request_for(url))
    assert [r.outcome for r in harness.rows()] == ["OK", "OK", "RESOURCE_EXHAUSTED", "OK", "OK"]
    limited = [(r.decision, r.rule_id) for r in harness.rows() if r.outcome == "RESOURCE_EXHAUSTED"]
    assert limited == [("deny", "egress-rate-limit")]
    assert len(upstream.received) == 4


async def test_per_plugin_concurrency_limit(
    egress: Any, records: Any, resolver: Any, upstream: Any, respond: Any, failing_fetch: Any, request_for: Any
) -> None:
    release, arrived = asyncio.Event(), asyncio.Event()

    async def held(request: Any, writer: asyncio.StreamWriter) -> None:
        arrived.set()
        await release.wait()
        await respond(writer, 200, b"done")

    upstream.routes["/held"] = held
    config = EgressConfig(allow_ranges=LOOPBACK, per_plugin_concurrency=1)
    harness = await egress(
        records=[records("busy", ["api.example.com"], [upstream.port])], resolver=_dns(resolver), config=config
    )
    url = f"https://api.example.com:{upstream.port}/held"
    async with harness.channel("busy") as channel:
        first = asyncio.ensure_future(harness.stub(channel).Fetch(request_for(url), timeout=20))
        await asyncio.wait_for(arrived.wait(), 10)
        code, info = await failing_fetch(harness, "busy", request_for(url))
        assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "EGRESS_BUSY")
        release.set()
        assert (await first).body == b"done"
    assert sorted(r.outcome for r in harness.rows()) == ["OK", "RESOURCE_EXHAUSTED"]
    busy = [(r.decision, r.rule_id) for r in harness.rows() if r.outcome == "RESOURCE_EXHAUSTED"]
    assert busy == [("deny", "egress-concurrency")]


class _Context:
    def time_remaining(self) -> float | None:
        return None


@pytest.mark.parametrize(
    ("principal", "status", "why"),
    [
        (Principal("operator", "admin"), "active", "not_a_plugin"),
        (Principal("anonymous", "127.0.0.1"), "active", "not_a_plugin"),
        (Principal("plugin", "fetcher"), "disabled", "plugin_not_active"),
        (Principal("plugin", "stranger"), "active", "plugin_not_active"),
    ],
)
async def test_only_active_plugins_fetch(records: Any, principal: Principal, status: str, why: str) -> None:
    record = dataclasses.replace(records("fetcher", ["api.example.com"], [443]), status=status)
    service = EgressService(
        plugin_lookup={"fetcher": record}.get,
        identify=lambda context: principal,
        annotate=lambda c, f: None,
    )
    with pytest.raises(PermissionDenied) as caught:
        await service.Fetch(egress_pb2.FetchRequest(method="GET", url="https://api.example.com/"), _Context())
    assert (caught.value.reason, caught.value.metadata["why"]) == ("EGRESS_DENIED", why)
