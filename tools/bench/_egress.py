"""`vivified bench egress` (docs/performance.md P7): a plugin's Fetch through the
egress proxy against a direct fetch of the same local HTTP server by the same
client code, interleaved round by round in one run.

In process, on loopback: a small HTTP/1.1 server; a core-like gRPC server
with the real interceptor chain (mTLS authentication, status gate, rate
limit, policy, SQLite audit with group commit) serving EgressService with the
allow range 127.0.0.0/8; and a plugin's mTLS channel. The direct baseline
uses the proxy's own HttpClient against the same server, so the ratio is the
cost of the proxy hop and its checks, not of a different HTTP stack. Every
fetch opens a new connection in both paths (the proxy never pools)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import pathlib
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format

from vivified.bench._report import BenchReport
from vivified.core.audit import AuditLog, CheckpointSigner
from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    new_private_key,
)
from vivified.core.chain import PluginView, RateLimitConfig, TokenBuckets, annotate
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.egress import (
    EgressConfig,
    EgressService,
    HttpClient,
    Steps,
    parse_url,
)
from vivified.core.harness import chain_deps, serve
from vivified.core.kinds import PluginStatus
from vivified.core.manifest import manifest_sha256
from vivified.core.policy import RuleIndex, load_rules
from vivified.core.registry import PluginRecord
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.manifest.v1.manifest_pb2 import PluginManifest

HOST = "bench.example.com"
BODY = b"x" * 256
RULES = b"""[{"id": "plugin-egress", "effect": "allow", "principal_kinds": ["plugin"],
  "services": ["vivified.egress.v1.EgressProxyService"]}]"""
CONFIG = EgressConfig(
    allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),),
    per_plugin_rate_per_second=1e9,
    per_plugin_burst=10**9,
    per_plugin_concurrency=64,
)


async def _serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _pem(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _self_signed(directory: pathlib.Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for HOST; the client trusts only this certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "upstream.crt").write_bytes(cert_pem)
    (directory / "upstream.key").write_bytes(_pem(key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "upstream.crt", directory / "upstream.key")
    return server, ssl.create_default_context(cadata=cert_pem.decode())


def _record(port: int) -> PluginRecord:
    manifest = json_format.ParseDict(
        {
            "id": "bench-fetcher",
            "name": "Bench fetcher",
            "version": "0.1.0",
            "description": "benchmark",
            "contracts": ["vivified.communication.v1.CommunicationPluginService"],
            "traits": ["communication_plugin", "external_service"],
            "security": {"allowed_domains": [HOST], "allowed_ports": [port]},
        },
        PluginManifest(),
    )
    return PluginRecord(
        plugin_id="bench-fetcher",
        status=PluginStatus.ACTIVE,
        manifest_sha256=manifest_sha256(manifest),
        manifest=manifest,
        granted_traits=frozenset(manifest.traits),
        version="0.1.0",
    )


def _plugin_channel(ca: CertificateAuthority, address: str) -> grpc.aio.Channel:
    key = new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench-fetcher")]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_plugin_certificate("bench-fetcher", csr.public_bytes(serialization.Encoding.PEM))
    creds = grpc.ssl_channel_credentials(ca.root_pem, _pem(key), issued.chain_pem)
    return grpc.aio.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", f"core.{ca.trust_domain}")]
    )


async def _core(
    ca: CertificateAuthority, log: AuditLog, record: PluginRecord, tls: ssl.SSLContext | None
) -> tuple[grpc.aio.Server, str]:
    clock = SystemClock()
    deps = chain_deps(
        ca,
        log,
        RuleIndex.build(load_rules(RULES)),
        plugin_lookup={record.plugin_id: PluginView(record.status, record.granted_traits)}.get,
        buckets=TokenBuckets(lambda: RateLimitConfig(rate_per_second=1e9, burst=10**9), clock),
    )

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    service = EgressService(
        plugin_lookup={record.plugin_id: record}.get,
        identify=deps.authenticator.principal,
        annotate=lambda context, fields: annotate(**fields),
        config=CONFIG,
        resolver=resolve,
        clock=clock,
        ssl_context=tls,
    )
    served = await serve(ca, deps, [(service, egress_pb2_grpc.add_EgressProxyServiceServicer_to_server)])
    return served.server, served.address


async def _timed(call: Callable[[], Awaitable[bytes]]) -> float:
    started = time.perf_counter()
    body = await call()
    elapsed = time.perf_counter() - started
    if body != BODY:
        raise RuntimeError("the benchmark server's body did not come back intact")
    return elapsed


def _row(path: str, samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "path": path,
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1e3, 3),
        "rounds": len(ordered),
    }


async def run_egress_bench(rounds: int = 300, warmup: int = 20, https: bool = False) -> BenchReport:
    """P7 against a plain HTTP upstream, or with `https` a TLS one (a new
    handshake per fetch in both paths, as for real upstreams)."""
    report = BenchReport("egress")
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        server_tls, client_tls = _self_signed(directory) if https else (None, None)
        upstream = await asyncio.start_server(_serve_http, "127.0.0.1", 0, ssl=server_tls)
        port = upstream.sockets[0].getsockname()[1]
        url = f"{'https' if https else 'http'}://{HOST}:{port}/resource"
        ca = CertificateAuthority.load_or_create(directory / "ca", CAConfig(), SystemClock())
        engine = create_engine_for(sqlite_url(directory / "bench.db"))
        log = AuditLog(
            engine,
            clock=SystemClock(),
            signer=CheckpointSigner.load_or_create(directory / "cp.key"),
            checkpoint_path=directory / "cp.jsonl",
        )
        await log.start()
        server, address = await _core(ca, log, _record(port), client_tls)
        client = HttpClient(connect_timeout=CONFIG.connect_timeout_seconds, ssl_context=client_tls)
        target = parse_url(url, allowed_ports=frozenset({port}))
        request = egress_pb2.FetchRequest(method="GET", url=url)
        direct_times: list[float] = []
        proxy_times: list[float] = []
        try:
            async with _plugin_channel(ca, address) as channel:
                stub = egress_pb2_grpc.EgressProxyServiceStub(channel)

                async def direct() -> bytes:
                    steps = Steps(CONFIG.total_timeout_seconds, CONFIG.idle_timeout_seconds)
                    response = await client.send(
                        target, ["127.0.0.1"], "GET", [], b"", steps, CONFIG.max_response_bytes
                    )
                    return await response.read()

                async def proxied() -> bytes:
                    return bytes((await stub.Fetch(request, timeout=30)).body)

                for n in range(warmup + rounds):
                    # Alternate which path goes first so neither always runs on a warmer cache.
                    order = [(direct, direct_times), (proxied, proxy_times)]
                    for call, samples in order if n % 2 else reversed(order):
                        elapsed = await _timed(call)
                        if n >= warmup:
                            samples.append(elapsed)
        finally:
            await server.stop(0)
            await log.close()
            engine.dispose()
            upstream.close()
            await upstream.wait_closed()
    scheme = "HTTPS" if https else "HTTP"
    report.rows.append(_row(f"direct {scheme} fetch (egress HttpClient, new connection)", direct_times))
    report.rows.append(
        _row(f"plugin Fetch of the same {scheme} server via the egress proxy (mTLS, chain, audit)", proxy_times)
    )
    report.ratios["P7.latency_p50"] = round(statistics.median(proxy_times) / statistics.median(direct_times), 3)
    return report
