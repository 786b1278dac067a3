"""`EgressProxyService.Connect`: TCP tunnels to allowlisted `host:port`s, behind
the real chain with real plugin certificates (see conftest). Each test checks
the status, the ErrorInfo reason and the one audit record of the tunnel."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2

from support.clients import error_info, manifest_message
from vivified.core.egress import EgressConfig, TunnelGrant, parse_egress_config
from vivified.core.errors import FailedPrecondition
from vivified.core.manifest import manifest_sha256, validate_manifest
from vivified.core.registry import PluginRecord
from vivified.core.traits import TraitCatalogue
from vivified.egress.v1 import egress_pb2

pytestmark = pytest.mark.asyncio

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def tunnel_record(
    plugin_id: str, tunnels: list[str], *, traits: tuple[str, ...] = ("external_service",)
) -> PluginRecord:
    manifest = manifest_message(
        plugin_id,
        traits=["communication_plugin", *traits],
        **({"security": {"allowed_tunnels": tunnels}} if tunnels else {}),
    )
    if tunnels or not traits:
        validate_manifest(manifest, TraitCatalogue.load_default())
    return PluginRecord(
        plugin_id=plugin_id,
        status="active",
        manifest_sha256=manifest_sha256(manifest),
        manifest=manifest,
        granted_traits=frozenset(manifest.traits),
        version="0.1.0",
    )


class TcpUpstream:
    """A line server on loopback: answers `HELLO` first, then each line upper-cased,
    and `BYE` when the client half-closes; records what it received."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, 0
        self.received = bytearray()
        self.connections = 0
        self.silent = False
        self.flood = 0
        self.tls: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.silent:
                await reader.read()
                return
            if self.flood:
                writer.write(b"x" * self.flood)
                await writer.drain()
                await reader.read()
                return
            writer.write(b"HELLO\r\n")
            await writer.drain()
            while line := await reader.readline():
                self.received += line
                if line.strip() == b"STARTTLS" and self.tls is not None:
                    writer.write(b"GO\r\n")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    continue
                writer.write(line.upper())
                await writer.drain()
            writer.write(b"BYE\r\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> TcpUpstream:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()


@pytest_asyncio.fixture
async def tcp_upstream() -> AsyncIterator[TcpUpstream]:
    server = await TcpUpstream().start()
    yield server
    await server.stop()


def _dns(resolver: Any) -> Any:
    return resolver(
        {
            "smtp.example.com": [["127.0.0.1"]],
            "mixed.example.com": [["93.184.216.34", "127.0.0.1"]],
            "public.example.com": [["93.184.216.34"]],
        }
    )


def opening(host: str, port: int, timeout: float | None = None) -> egress_pb2.ConnectRequest:
    open_ = egress_pb2.ConnectOpen(host=host, port=port)
    if timeout is not None:
        open_.timeout.CopyFrom(duration_pb2.Duration(seconds=int(timeout), nanos=int(timeout % 1 * 1e9)))
    return egress_pb2.ConnectRequest(open=open_)


async def converse(
    harness: Any, plugin_id: str, host: str, port: int, lines: list[bytes], *, timeout: float | None = None
) -> tuple[str, bytes]:
    """Open a tunnel, send `lines`, half-close, read until the core ends the
    stream: (resolved address, every byte received)."""
    async with harness.channel(plugin_id) as channel:
        call = harness.stub(channel).Connect(timeout=20)
        await call.write(opening(host, port, timeout))
        for line in lines:
            await call.write(egress_pb2.ConnectRequest(data=line))
        await call.done_writing()
        address, data = "", bytearray()
        async for response in call:
            if response.WhichOneof("part") == "opened":
                address = response.opened.resolved_address
            else:
                data += response.data
        return address, bytes(data)


async def refused(harness: Any, plugin_id: str, host: str, port: int, **kwargs: Any) -> tuple[grpc.StatusCode, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await converse(harness, plugin_id, host, port, [b"NOOP\r\n"], **kwargs)
    return caught.value.code(), error_info(caught.value)


def detail(row: Any) -> dict[str, str]:
    return json.loads(row.detail) if row.detail else {}


async def test_tunnel_moves_bytes_both_ways_and_audits_once(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream, recording_connector: Any
) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])],
        resolver=_dns(resolver),
        connector=recording_connector,
    )
    address, data = await converse(
        harness, "mailer", "SMTP.example.com.", tcp_upstream.port, [b"ehlo a\r\n", b"quit\r\n"]
    )
    assert address == "127.0.0.1"
    assert data == b"HELLO\r\nEHLO A\r\nQUIT\r\nBYE\r\n"
    assert bytes(tcp_upstream.received) == b"ehlo a\r\nquit\r\n"
    # The checked address is the one dialled: no TLS by the core, no name lookup at dial time.
    assert recording_connector.dialled == [("127.0.0.1", tcp_upstream.port, None)]
    rows = harness.rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor, row.action, row.decision, row.outcome) == (
        "plugin:mailer",
        "/vivified.egress.v1.EgressProxyService/Connect",
        "allow",
        "OK",
    )
    facts = detail(row)
    assert (facts["host"], facts["port"], facts["address"]) == ("smtp.example.com", str(tcp_upstream.port), "127.0.0.1")
    assert (facts["bytes_sent"], facts["bytes_received"]) == ("14", str(len(data)))
    assert int(facts["duration_ms"]) >= 0


async def test_undeclared_endpoint_is_denied_before_resolving(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream
) -> None:
    dns = _dns(resolver)
    harness = await egress(records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])], resolver=dns)
    # Declared host, other port.
    code, info = await refused(harness, "mailer", "smtp.example.com", tcp_upstream.port + 1)
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "tunnel_not_allowed",
    )
    rows = harness.rows()
    assert len(rows) == 1 and (rows[0].decision, rows[0].rule_id, rows[0].outcome) == (
        "deny",
        "egress",
        "PERMISSION_DENIED",
    )
    assert detail(rows[0])["why"] == "tunnel_not_allowed"
    # Undeclared host.
    code, info = await refused(harness, "mailer", "public.example.com", tcp_upstream.port)
    assert (code, info.reason, info.metadata["why"], info.metadata["host"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "tunnel_not_allowed",
        "public.example.com",
    )
    assert len(harness.rows()) == 2
    assert dns.calls == [] and tcp_upstream.connections == 0


async def test_another_plugins_tunnel_is_not_admitted(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    endpoint = f"smtp.example.com:{tcp_upstream.port}"
    harness = await egress(
        records=[tunnel_record("mailer", [endpoint]), tunnel_record("other", ["public.example.com:25"])],
        resolver=_dns(resolver),
    )
    code, info = await refused(harness, "other", "smtp.example.com", tcp_upstream.port)
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "tunnel_not_allowed",
    )
    assert len(harness.rows()) == 1 and tcp_upstream.connections == 0


async def test_forbidden_address_is_denied(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    port = tcp_upstream.port
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{port}", f"mixed.example.com:{port}"])],
        resolver=_dns(resolver),
        config=EgressConfig(),
    )
    for host in ("smtp.example.com", "mixed.example.com"):
        code, info = await refused(harness, "mailer", host, port)
        assert (code, info.reason, info.metadata["why"], info.metadata["address"], info.metadata["address_class"]) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "EGRESS_DENIED",
            "address_not_public",
            "127.0.0.1",
            "loopback",
        )
    rows = harness.rows()
    assert len(rows) == 2 and all(r.decision == "deny" and detail(r)["why"] == "address_not_public" for r in rows)
    assert tcp_upstream.connections == 0


async def test_h1_ip_literal_without_a_grant_is_refused(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])],
        resolver=_dns(resolver),
        config=EgressConfig(),
    )
    for host in ("127.0.0.1", "::1", "2130706433", "localhost", "smtp.example.com/x", "a@smtp.example.com"):
        code, info = await refused(harness, "mailer", host, tcp_upstream.port)
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED), host
        assert info.reason in ("EGRESS_URL_INVALID", "INVALID_REQUEST", "EGRESS_DENIED"), host
    assert len(harness.rows()) == 6 and tcp_upstream.connections == 0


async def test_operator_grant_admits_exactly_that_address_and_port(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream
) -> None:
    port = tcp_upstream.port
    grant = TunnelGrant("mailer", "127.0.0.1", port)
    harness = await egress(
        records=[
            tunnel_record("mailer", [], traits=("external_service",)),
            tunnel_record("other", ["public.example.com:25"]),
        ],
        resolver=_dns(resolver),
        config=EgressConfig(tunnel_grants=(grant,)),
    )
    address, data = await converse(harness, "mailer", "127.0.0.1", port, [b"hi\r\n"])
    assert (address, data) == ("127.0.0.1", b"HELLO\r\nHI\r\nBYE\r\n")
    # Not another port, not another loopback address, not by a name that resolves there, not for another plugin.
    code, info = await refused(harness, "mailer", "127.0.0.1", port + 1)
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID")
    code, info = await refused(harness, "mailer", "127.0.0.2", port)
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID")
    code, info = await refused(harness, "other", "127.0.0.1", port)
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EGRESS_URL_INVALID")
    # An IP literal is refused as a malformed endpoint, as in a fetch URL: one record each.
    assert [r.outcome for r in harness.rows()] == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert tcp_upstream.connections == 1


async def test_grant_never_admits_the_cores_own_endpoint(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    port = tcp_upstream.port
    harness = await egress(
        records=[tunnel_record("mailer", [], traits=("external_service",))],
        resolver=_dns(resolver),
        config=EgressConfig(tunnel_grants=(TunnelGrant("mailer", "127.0.0.1", port),)),
        own_endpoints=frozenset({(None, port)}),
    )
    code, info = await refused(harness, "mailer", "127.0.0.1", port)
    assert (code, info.reason, info.metadata["address_class"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "core_endpoint",
    )
    assert len(harness.rows()) == 1 and tcp_upstream.connections == 0


async def test_plugin_without_external_service_is_denied(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    harness = await egress(records=[tunnel_record("plain", [], traits=())], resolver=_dns(resolver))
    code, info = await refused(harness, "plain", "smtp.example.com", tcp_upstream.port)
    assert (code, info.reason, info.metadata["why"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "EGRESS_DENIED",
        "trait_missing",
    )
    assert len(harness.rows()) == 1


async def test_report_only_admits_an_undeclared_endpoint_and_says_so(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream
) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", ["public.example.com:25"])],
        resolver=_dns(resolver),
        config=EgressConfig(allow_ranges=LOOPBACK, report_only_plugins=frozenset({"mailer"})),
    )
    _, data = await converse(harness, "mailer", "smtp.example.com", tcp_upstream.port, [b"x\r\n"])
    assert data.startswith(b"HELLO")
    rows = harness.rows()
    assert len(rows) == 1 and rows[0].outcome == "OK" and detail(rows[0])["would_deny"] == "tunnel_not_allowed"


async def test_address_checks_are_never_report_only(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])],
        resolver=_dns(resolver),
        config=EgressConfig(report_only_plugins=frozenset({"mailer"})),
    )
    code, info = await refused(harness, "mailer", "smtp.example.com", tcp_upstream.port)
    assert (code, info.metadata["why"]) == (grpc.StatusCode.PERMISSION_DENIED, "address_not_public")
    assert len(harness.rows()) == 1


async def test_byte_cap_each_way(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    endpoint = [f"smtp.example.com:{tcp_upstream.port}"]
    config = EgressConfig(allow_ranges=LOOPBACK, tunnel_max_bytes=1000)
    harness = await egress(records=[tunnel_record("mailer", endpoint)], resolver=_dns(resolver), config=config)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await converse(
            harness, "mailer", "smtp.example.com", tcp_upstream.port, [b"a" * 600 + b"\n", b"b" * 600 + b"\n"]
        )
    assert (caught.value.code(), error_info(caught.value).reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "EGRESS_TOO_LARGE",
    )
    tcp_upstream.flood = 5000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await converse(harness, "mailer", "smtp.example.com", tcp_upstream.port, [b"x"])
    assert (caught.value.code(), error_info(caught.value).reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "EGRESS_TOO_LARGE",
    )
    rows = harness.rows()
    assert [r.outcome for r in rows] == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
    assert int(detail(rows[0])["bytes_sent"]) > 1000 and int(detail(rows[1])["bytes_received"]) > 1000


async def test_idle_and_total_limits(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    tcp_upstream.silent = True
    endpoint = [f"smtp.example.com:{tcp_upstream.port}"]
    config = EgressConfig(allow_ranges=LOOPBACK, tunnel_idle_seconds=0.3)
    harness = await egress(records=[tunnel_record("mailer", endpoint)], resolver=_dns(resolver), config=config)

    async def hold(timeout: float | None) -> tuple[grpc.StatusCode, str, str]:
        async with harness.channel("mailer") as channel:
            call = harness.stub(channel).Connect(timeout=20)
            await call.write(opening("smtp.example.com", tcp_upstream.port, timeout))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
        info = error_info(caught.value)
        return caught.value.code(), info.reason, info.metadata["which"]

    assert await hold(None) == (grpc.StatusCode.DEADLINE_EXCEEDED, "EGRESS_TIMEOUT", "idle")
    harness2 = await egress(
        records=[tunnel_record("mailer", endpoint)],
        resolver=_dns(resolver),
        config=EgressConfig(allow_ranges=LOOPBACK, tunnel_idle_seconds=30),
    )
    harness = harness2
    assert await hold(0.3) == (grpc.StatusCode.DEADLINE_EXCEEDED, "EGRESS_TIMEOUT", "total")
    rows = harness2.rows()
    assert len(rows) == 1 and rows[0].outcome == "DEADLINE_EXCEEDED" and detail(rows[0])["why"] == "total"


async def test_first_message_must_be_open(egress: Any, resolver: Any, tcp_upstream: TcpUpstream) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])], resolver=_dns(resolver)
    )
    async with harness.channel("mailer") as channel:
        call = harness.stub(channel).Connect(timeout=20)
        await call.write(egress_pb2.ConnectRequest(data=b"EHLO\r\n"))
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert (caught.value.code(), error_info(caught.value).reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    assert len(harness.rows()) == 1 and tcp_upstream.connections == 0


async def test_tls_inside_the_tunnel_is_end_to_end(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream, local_tls: Any
) -> None:
    """The plugin upgrades to TLS inside the tunnel (like SMTP STARTTLS) and
    verifies the server's certificate itself; the core sees only ciphertext."""
    tcp_upstream.tls = local_tls.server()
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])],
        resolver=_dns(resolver),
    )
    secret_line = b"over tls only\r\n"
    async with harness.channel("mailer") as channel:
        call = harness.stub(channel).Connect(timeout=20)
        await call.write(opening("smtp.example.com", tcp_upstream.port))
        incoming = ssl.MemoryBIO()
        outgoing = ssl.MemoryBIO()
        tls = local_tls.client.wrap_bio(incoming, outgoing, server_hostname="api.example.com")
        plain = bytearray()
        responses = aiter(call)

        async def read_more() -> None:
            response = await anext(responses)
            if response.WhichOneof("part") == "data":
                incoming.write(response.data)

        async def flush() -> None:
            if pending := outgoing.read():
                await call.write(egress_pb2.ConnectRequest(data=pending))

        await read_more()  # opened
        while b"HELLO\r\n" not in plain:
            await read_more()
            plain = bytearray(incoming.read())
        await call.write(egress_pb2.ConnectRequest(data=b"STARTTLS\r\n"))
        buffered = b""
        while b"GO\r\n" not in buffered:
            await read_more()
            buffered += incoming.read()
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await flush()
                await read_more()
        tls.write(secret_line)
        await flush()
        echoed = b""
        while secret_line.upper() not in echoed:
            await read_more()
            try:
                echoed += tls.read()
            except ssl.SSLWantReadError:
                pass
        await call.done_writing()
        async for _ in call:
            pass
    assert secret_line in bytes(tcp_upstream.received)
    rows = harness.rows()
    assert len(rows) == 1 and rows[0].outcome == "OK"
    # The core carried the TLS records unchanged: far more than the plain lines.
    assert int(detail(rows[0])["bytes_sent"]) > len(b"STARTTLS\r\n") + len(secret_line) + 100


async def test_tunnel_grants_config_is_strict() -> None:
    config = parse_egress_config({"tunnel_grants": [{"plugin_id": "mailer", "host": "127.0.0.1", "port": 2525}]})
    assert config.tunnel_grants == (TunnelGrant("mailer", "127.0.0.1", 2525),)
    for bad in (
        [{"plugin_id": "mailer", "host": "127.0.0.1"}],
        [{"plugin_id": "mailer", "host": "127.0.0.1", "port": 0}],
        [{"plugin_id": "mailer", "host": "127.0.0.1", "port": "25"}],
        [{"plugin_id": "mailer", "host": "a b", "port": 25}],
        [{"plugin_id": "", "host": "127.0.0.1", "port": 25}],
        [{"plugin_id": "m", "host": "127.0.0.1", "port": 25}, {"plugin_id": "m", "host": "127.0.0.1", "port": 25}],
    ):
        with pytest.raises(FailedPrecondition) as caught:
            parse_egress_config({"tunnel_grants": bad})
        assert caught.value.reason == "EGRESS_CONFIG_INVALID"


async def test_a_tunnel_the_plugin_cancels_is_still_audited_once(
    egress: Any, resolver: Any, tcp_upstream: TcpUpstream
) -> None:
    harness = await egress(
        records=[tunnel_record("mailer", [f"smtp.example.com:{tcp_upstream.port}"])], resolver=_dns(resolver)
    )
    async with harness.channel("mailer") as channel:
        call = harness.stub(channel).Connect(timeout=20)
        await call.write(opening("smtp.example.com", tcp_upstream.port))
        await call.write(egress_pb2.ConnectRequest(data=b"ehlo\r\n"))
        seen = b""
        async for response in call:
            seen += response.data
            if b"EHLO" in seen:
                break
        call.cancel()

    def recorded() -> list[Any]:
        return harness.rows()

    for _ in range(100):
        if recorded():
            break
        await asyncio.sleep(0.05)
    rows = recorded()
    assert len(rows) == 1 and rows[0].outcome == "CANCELLED"
    facts = detail(rows[0])
    assert facts["bytes_sent"] == "6" and int(facts["bytes_received"]) >= len(b"HELLO\r\nEHLO\r\n")
