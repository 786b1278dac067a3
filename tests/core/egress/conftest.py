"""Fixtures for the egress tests: scripted HTTP(S) upstreams on loopback, a
local CA for their certificates, an injected resolver that never touches the
network, and the egress service behind the real interceptor chain (real CA,
real mTLS, real SQLite audit log), like tests/core/chain."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import pathlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.sdk.trace import TracerProvider

from support.clients import error_info, manifest_message
from vivified.core.audit import AuditLog, CheckpointSigner, audit_table
from vivified.core.ca import CAConfig, CertificateAuthority, new_private_key
from vivified.core.chain import PluginView, RateLimitConfig, TokenBuckets, annotate
from vivified.core.clock import ManualClock, SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.egress import EgressConfig, EgressService, open_stream
from vivified.core.harness import chain_deps, serve
from vivified.core.manifest import manifest_sha256, validate_manifest
from vivified.core.policy import RuleIndex, load_rules
from vivified.core.registry import PluginRecord
from vivified.core.traits import TraitCatalogue
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc

# The rule the core's rules.json gets for this lane: any plugin may call the
# service; the handler itself requires the external_service trait.
RULES = json.dumps(
    [
        {
            "id": "plugin-egress",
            "effect": "allow",
            "principal_kinds": ["plugin"],
            "services": ["vivified.egress.v1.EgressProxyService"],
        }
    ]
).encode()
TLS_NAMES = ("api.example.com", "*.example.com", "files.example.org")


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    local_address: str
    server_name: str | None

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name), None)

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


Handler = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


async def reply(
    writer: asyncio.StreamWriter, status: int = 200, body: bytes = b"ok", headers: tuple[tuple[str, str], ...] = ()
) -> None:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *(f"{n}: {v}" for n, v in headers)]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


class Upstream:
    """A scripted HTTP/1.1 server on a loopback address; routes by path."""

    def __init__(self, tls: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
        self.tls, self.host, self.port = tls, host, 0
        self.routes: dict[str, Handler] = {}
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The TLS server name (SNI) each connection asked for, by its SSL object.
        self._names: dict[int, str | None] = {}
        if tls is not None:
            tls.sni_callback = lambda ssl_object, name, context: self._names.__setitem__(id(ssl_object), name)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = [tuple(line.split(": ", 1)) for line in head[1:] if line]
            length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
            body = await reader.readexactly(length)
            ssl_object = writer.get_extra_info("ssl_object")
            request = Received(
                method,
                target,
                headers,
                body,
                writer.get_extra_info("sockname")[0],  # type: ignore[arg-type]
                self._names.get(id(ssl_object)) if ssl_object is not None else None,
            )
            self.received.append(request)
            handler = self.routes.get(target.split("?", 1)[0], lambda r, w: reply(w))
            await handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class FakeResolver:
    """Answers from a table, one answer per call (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        script = self.answers.get(host)
        if not script:
            raise OSError(f"no such host {host}")
        return script.pop(0) if len(script) > 1 else list(script[0])


class RecordingConnector:
    """The real connector, recording what it dialled."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int, str | None]] = []

    async def __call__(self, address: str, port: int, tls: ssl.SSLContext | None, name: str | None) -> Any:
        self.dialled.append((address, port, name))
        return await open_stream(address, port, tls, name)


@dataclass
class LocalTLS:
    cert_path: pathlib.Path
    key_path: pathlib.Path
    client: ssl.SSLContext

    def server(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _local_tls(directory: pathlib.Path) -> LocalTLS:
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in TLS_NAMES]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "upstream.crt", directory / "upstream.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return LocalTLS(cert_path, key_path, client)


@pytest.fixture(scope="session")
def local_tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTLS:
    return _local_tls(tmp_path_factory.mktemp("egress-tls"))


@pytest_asyncio.fixture
async def upstream(local_tls: LocalTLS) -> AsyncIterator[Upstream]:
    """An HTTPS upstream on 127.0.0.1 with a certificate for TLS_NAMES."""
    server = await Upstream(local_tls.server()).start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def plain_upstream() -> AsyncIterator[Upstream]:
    """A plain HTTP upstream on 127.0.0.1."""
    server = await Upstream(None).start()
    yield server
    await server.stop()


def plugin_record(
    plugin_id: str, domains: list[str], ports: list[int], *, traits: tuple[str, ...] = ("external_service",)
) -> PluginRecord:
    manifest = manifest_message(
        plugin_id,
        traits=["communication_plugin", *traits],
        **({"security": {"allowed_domains": domains, "allowed_ports": ports}} if domains else {}),
    )
    validate_manifest(manifest, TraitCatalogue.load_default())
    return PluginRecord(
        plugin_id=plugin_id,
        status="active",
        manifest_sha256=manifest_sha256(manifest),
        manifest=manifest,
        granted_traits=frozenset(manifest.traits),
        version="0.1.0",
    )


@dataclass
class EgressHarness:
    address: str
    engine: sa.Engine
    ca: CertificateAuthority
    records: dict[str, PluginRecord]
    service: Any = None
    notes: list[dict[str, str]] = field(default_factory=list)

    def channel(self, name: str) -> grpc.aio.Channel:
        key = new_private_key()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        issued = self.ca.issue_plugin_certificate(name, csr.public_bytes(serialization.Encoding.PEM))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        creds = grpc.ssl_channel_credentials(self.ca.root_pem, key_pem, issued.chain_pem)
        return grpc.aio.secure_channel(
            self.address, creds, options=[("grpc.ssl_target_name_override", "core.vivified.local")]
        )

    def stub(self, channel: grpc.aio.Channel) -> egress_pb2_grpc.EgressProxyServiceStub:
        return egress_pb2_grpc.EgressProxyServiceStub(channel)

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).all())

    def details(self) -> list[dict[str, str]]:
        return [json.loads(row.detail) if row.detail else {} for row in self.rows()]


EgressFactory = Callable[..., Awaitable[EgressHarness]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=dt.datetime.now(dt.UTC))


@pytest_asyncio.fixture
async def egress(tmp_path: pathlib.Path, local_tls: LocalTLS, clock: ManualClock) -> AsyncIterator[EgressFactory]:
    """Build the egress service behind the real chain: egress(records=..., config=..., resolver=...)."""
    stack: list[Callable[[], Awaitable[None]]] = []
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", CAConfig(), SystemClock())

    async def build(
        *,
        records: list[PluginRecord],
        resolver: Any,
        config: EgressConfig | None = None,
        connector: Any = open_stream,
        environ: dict[str, str] | None = None,
        own_endpoints: frozenset[Any] = frozenset(),
    ) -> EgressHarness:
        # Each harness its own database and so its own checkpoint file: a log
        # refuses to start on checkpoints that cover records its table lacks.
        engine = create_engine_for(sqlite_url(tmp_path / f"db{len(stack)}.sqlite"))
        log = AuditLog(
            engine,
            clock=SystemClock(),
            signer=CheckpointSigner.load_or_create(tmp_path / "cp.key"),
            checkpoint_path=tmp_path / f"cp{len(stack)}.jsonl",
        )
        await log.start()
        by_id = {r.plugin_id: r for r in records}

        def view(plugin_id: str) -> PluginView | None:
            record = by_id.get(plugin_id)
            return PluginView(record.status, record.granted_traits) if record else None

        deps = chain_deps(
            ca,
            log,
            RuleIndex.build(load_rules(RULES)),
            tracer=TracerProvider().get_tracer("test"),
            plugin_lookup=view,
            buckets=TokenBuckets(lambda: RateLimitConfig(), clock),
        )
        authenticator = deps.authenticator
        harness = EgressHarness("", engine, ca, by_id)

        def note(context: Any, fields: dict[str, str]) -> None:
            harness.notes.append(dict(fields))
            annotate(**fields)

        service = EgressService(
            plugin_lookup=by_id.get,
            identify=authenticator.principal,
            annotate=note,
            config=config or EgressConfig(allow_ranges=(ipaddress.ip_network("127.0.0.0/8"),)),
            resolver=resolver,
            clock=clock,
            ssl_context=local_tls.client,
            connector=connector,
            own_endpoints=own_endpoints,
            environ=environ or {},
        )
        harness.service = service
        served = await serve(ca, deps, [(service, egress_pb2_grpc.add_EgressProxyServiceServicer_to_server)])
        harness.address = served.address

        async def close() -> None:
            await served.stop()
            await log.close()
            engine.dispose()

        stack.append(close)
        return harness

    yield build
    for close in reversed(stack):
        await close()


@pytest.fixture
def records() -> Callable[..., PluginRecord]:
    return plugin_record


@pytest_asyncio.fixture
async def upstream_factory(local_tls: LocalTLS) -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """Start extra upstreams (another loopback address, plain HTTP)."""
    started: list[Upstream] = []

    async def start(host: str = "127.0.0.1", tls: bool = True) -> Upstream:
        server = await Upstream(local_tls.server() if tls else None, host).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def respond() -> Callable[..., Awaitable[None]]:
    """reply(writer, status=200, body=b"ok", headers=()) for route handlers."""
    return reply


def fetch(
    url: str, method: str = "GET", *, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> egress_pb2.FetchRequest:
    return egress_pb2.FetchRequest(
        method=method, url=url, headers=[egress_pb2.HttpHeader(name=n, value=v) for n, v in headers], body=body
    )


@pytest.fixture
def request_for() -> Callable[..., egress_pb2.FetchRequest]:
    return fetch


@pytest.fixture
def resolver() -> Callable[[dict[str, list[list[str]]]], FakeResolver]:
    return FakeResolver


@pytest.fixture
def recording_connector() -> RecordingConnector:
    return RecordingConnector()


async def _failing_fetch(
    harness: EgressHarness, plugin_id: str, request: egress_pb2.FetchRequest
) -> tuple[grpc.StatusCode, Any]:
    """Fetch that must fail: (status code, ErrorInfo)."""
    async with harness.channel(plugin_id) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub(channel).Fetch(request, timeout=20)
    return caught.value.code(), error_info(caught.value)


async def _good_fetch(
    harness: EgressHarness, plugin_id: str, request: egress_pb2.FetchRequest
) -> egress_pb2.FetchResponse:
    async with harness.channel(plugin_id) as channel:
        response: egress_pb2.FetchResponse = await harness.stub(channel).Fetch(request, timeout=20)
        return response


@pytest.fixture
def failing_fetch() -> Callable[..., Awaitable[tuple[grpc.StatusCode, Any]]]:
    return _failing_fetch


@pytest.fixture
def good_fetch() -> Callable[..., Awaitable[egress_pb2.FetchResponse]]:
    return _good_fetch
