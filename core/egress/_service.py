"""`EgressProxyService`: the only way a plugin reaches an external HTTP service.

Served by the core behind the interceptor chain (which authenticates the
plugin, gates its status, applies policy and writes the call's one audit
record). The handler then requires the `external_service` trait, applies the
plugin's own allowlist and limits, and adds the fetch's facts — host, port,
resolved address, status, bytes, hops, `why` of a refusal, `would_deny` in
report-only mode — to that record through `annotate`; never a body, a header
value or a credential (an injected one is named by its header only, as
`credential`). `Connect` tunnels (see `_tunnel`) add the endpoint, the
address dialled, the bytes each way and the duration, in one record written
when the tunnel ends."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace

from vivified.core.chain import Principal, PrincipalKind
from vivified.core.clock import Clock, SystemClock
from vivified.core.egress._addresses import (
    AddressPolicy,
    Resolver,
    endpoints_from,
    system_resolver,
)
from vivified.core.egress._allowlist import Allowlist
from vivified.core.egress._client import (
    Connector,
    HttpClient,
    UpstreamResponse,
    open_stream,
)
from vivified.core.egress._config import EgressConfig
from vivified.core.egress._credentials import Credentials, InjectedCredentials, SecretReader
from vivified.core.egress._errors import denied, request_invalid, too_large
from vivified.core.egress._fetch import Caller, Fetcher, Outgoing
from vivified.core.egress._headers import response_headers
from vivified.core.egress._limits import PluginLimits
from vivified.core.egress._tunnel import Tunnel, TunnelAllowlist, Tunneler
from vivified.core.egress._url import IPAddress
from vivified.core.egress._wire import HEAD_LIMIT, Steps
from vivified.core.errors import VivifiedError
from vivified.core.registry import ACTIVE, PluginRecord
from vivified.egress.v1 import egress_pb2, egress_pb2_grpc

TRAIT = "external_service"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
STREAM_CHUNK_BYTES = 64 * 1024
Annotate = Callable[[Any, dict[str, str]], None]


class EgressService(egress_pb2_grpc.EgressProxyServiceServicer):
    def __init__(
        self,
        *,
        plugin_lookup: Callable[[str], PluginRecord | None],
        identify: Callable[[Any], Principal],
        annotate: Annotate,
        config: EgressConfig | None = None,
        resolver: Resolver = system_resolver,
        clock: Clock | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connector: Connector = open_stream,
        own_endpoints: frozenset[tuple[IPAddress | None, int]] = frozenset(),
        environ: Mapping[str, str] | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        plugin_secret: SecretReader | None = None,
        tracer: trace.Tracer | None = None,
        on_fetch: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """`environ` is read here, once, for credential values; `ssl_context`
        replaces the system trust store (tests with a local CA);
        `plugin_secret` reads a plugin's secret config value for the
        credentials its manifest has the core inject (none are injected without it)."""
        self._config = config = config or EgressConfig()
        # A span per unary fetch (plugin id, status, outcome: never the URL, headers or body),
        # and its duration by plugin and outcome (gRPC code name).
        self._tracer = tracer or trace.NoOpTracer()
        self._on_fetch = on_fetch or (lambda _plugin, _outcome, _seconds: None)
        self._lookup = plugin_lookup
        self._identify = identify
        self._annotate = annotate
        self._limits = PluginLimits(
            rate_per_second=config.per_plugin_rate_per_second,
            burst=config.per_plugin_burst,
            concurrency=config.per_plugin_concurrency,
            clock=clock or SystemClock(),
        )
        resolver = config.resolve_overrides(resolver)
        self._fetcher = Fetcher(
            config=config,
            policy=AddressPolicy(config.allow_ranges, config.deny_ranges, own_endpoints),
            resolver=resolver,
            client=HttpClient(
                connect_timeout=config.connect_timeout_seconds, ssl_context=ssl_context, connector=connector
            ),
            credentials=Credentials(config.credentials, environ or {}),
            injected=InjectedCredentials(plugin_secret),
        )
        # Fetch answers in one message: keep room for the head within the gRPC limit.
        self._unary_cap = min(config.max_response_bytes, max_message_bytes - HEAD_LIMIT - 4096)
        self._allowlists: dict[tuple[str, str], Allowlist] = {}
        self._tunnel_allowlists: dict[tuple[str, str], TunnelAllowlist] = {}
        self._tunneler = Tunneler(
            config=config, policy=lambda: self._fetcher.policy, resolver=resolver, connector=connector
        )

    def listening_on(self, addresses: Iterable[str]) -> None:
        """Tell the service where the core listens once its ports are bound
        (`host:port`), so a fetch can never loop back into the core."""
        self._fetcher.policy = dataclasses.replace(self._fetcher.policy, own_endpoints=endpoints_from(addresses))

    def _note(self, context: Any, **fields: str) -> None:
        self._annotate(context, {key: value for key, value in fields.items() if value})

    def _record(self, context: Any) -> PluginRecord:
        principal = self._identify(context)
        if principal.kind != PrincipalKind.PLUGIN:
            raise denied("only plugins fetch through the egress proxy", "not_a_plugin")
        record = self._lookup(principal.id)
        if record is None or record.status != ACTIVE:
            raise denied(f"plugin {principal.id!r} is not active", "plugin_not_active")
        if TRAIT not in record.granted_traits:
            raise denied(f"plugin {principal.id!r} lacks the {TRAIT} trait", "trait_missing")
        return record

    def _caller(self, context: Any) -> Caller:
        record = self._record(context)
        key = (record.plugin_id, record.manifest_sha256)
        allowlist = self._allowlists.get(key)
        if allowlist is None:
            if len(self._allowlists) > 4096:
                self._allowlists.clear()
            allowlist = self._allowlists[key] = Allowlist.from_manifest(record.manifest)
        return Caller(
            record.plugin_id,
            allowlist,
            record.plugin_id in self._config.report_only_plugins,
            tuple(record.manifest.security.injected_credentials),
        )

    def _outgoing(self, request: egress_pb2.FetchRequest, context: Any) -> tuple[Outgoing, float]:
        if request.method not in METHODS:
            raise request_invalid(f"method must be one of {', '.join(sorted(METHODS))}")
        if len(request.body) > self._config.max_request_bytes:
            raise too_large(f"the request body exceeds {self._config.max_request_bytes} bytes")
        total = self._config.total_timeout_seconds
        if request.HasField("timeout"):
            asked = request.timeout.ToTimedelta().total_seconds()
            if asked <= 0:
                raise request_invalid("timeout must be positive")
            total = min(total, asked)
        remaining = context.time_remaining()
        if remaining is not None:
            total = min(total, remaining)
        headers = [(h.name, h.value) for h in request.headers]
        return Outgoing(request.method, request.url, headers, request.body), total

    def _head(self, response: UpstreamResponse) -> egress_pb2.FetchResponse:
        headers = response_headers(response.head.headers, decoded=response.decoder.decoding)
        return egress_pb2.FetchResponse(
            status_code=response.head.status,
            headers=[egress_pb2.HttpHeader(name=n, value=v) for n, v in headers],
            resolved_address=response.address,
        )

    async def Fetch(self, request: egress_pb2.FetchRequest, context: Any) -> egress_pb2.FetchResponse:
        note = functools.partial(self._note, context)
        started, plugin_id, outcome = time.perf_counter(), "", "OK"
        span = self._tracer.start_span("vivified.egress/fetch", kind=trace.SpanKind.CLIENT)
        try:
            caller = self._caller(context)
            plugin_id = caller.plugin_id
            outgoing, total = self._outgoing(request, context)
            with self._limits.slot(caller.plugin_id):
                steps = Steps(total, self._config.idle_timeout_seconds)
                response = await self._fetcher.open(caller, outgoing, steps, self._unary_cap, note)
                body = await response.read()
            span.set_attribute("http.response.status_code", response.head.status)
        except VivifiedError as exc:
            outcome = exc.code.name
            span.set_status(trace.StatusCode.ERROR, exc.reason)
            note(why=exc.metadata.get("why", "") or exc.metadata.get("which", ""))
            raise
        except BaseException:
            outcome = "INTERNAL"
            raise
        finally:
            span.set_attributes({"vivified.plugin": plugin_id, "vivified.outcome": outcome})
            span.end()
            if plugin_id:
                self._on_fetch(plugin_id, outcome, time.perf_counter() - started)
        note(bytes=str(len(body)))
        answer = self._head(response)
        answer.body = body
        return answer

    async def StreamFetch(
        self, request: egress_pb2.StreamFetchRequest, context: Any
    ) -> AsyncIterator[egress_pb2.StreamFetchResponse]:
        note = functools.partial(self._note, context)
        sent = 0
        try:
            caller = self._caller(context)
            outgoing, total = self._outgoing(request.request, context)
            with self._limits.slot(caller.plugin_id):
                steps = Steps(total, self._config.idle_timeout_seconds)
                response = await self._fetcher.open(caller, outgoing, steps, self._config.max_response_bytes, note)
                try:
                    yield egress_pb2.StreamFetchResponse(head=self._head(response))
                    async for piece in response.chunks():
                        for start in range(0, len(piece), STREAM_CHUNK_BYTES):
                            yield egress_pb2.StreamFetchResponse(body_chunk=piece[start : start + STREAM_CHUNK_BYTES])
                        sent += len(piece)
                finally:
                    response.close()
        except VivifiedError as exc:
            note(why=exc.metadata.get("why", "") or exc.metadata.get("which", ""), bytes=str(sent))
            raise
        note(bytes=str(sent))

    def _tunnel_allowlist(self, record: PluginRecord) -> TunnelAllowlist:
        key = (record.plugin_id, record.manifest_sha256)
        allowlist = self._tunnel_allowlists.get(key)
        if allowlist is None:
            if len(self._tunnel_allowlists) > 4096:
                self._tunnel_allowlists.clear()
            allowlist = self._tunnel_allowlists[key] = TunnelAllowlist.from_manifest(record.manifest, self._config)
        return allowlist

    def _tunnel_seconds(self, request: egress_pb2.ConnectOpen, context: Any) -> float:
        total = self._config.tunnel_max_seconds
        if request.HasField("timeout"):
            asked = request.timeout.ToTimedelta().total_seconds()
            if asked <= 0:
                raise request_invalid("open.timeout must be positive")
            total = min(total, asked)
        remaining = context.time_remaining()
        if remaining is not None:
            total = min(total, remaining)
        return total

    async def _first(self, requests: AsyncIterator[egress_pb2.ConnectRequest]) -> egress_pb2.ConnectOpen:
        try:
            async with asyncio.timeout(self._config.connect_timeout_seconds):
                first = await anext(requests, None)
        except TimeoutError:
            raise request_invalid("the first message of a tunnel must be open, sent at once") from None
        if first is None or first.WhichOneof("part") != "open":
            raise request_invalid("the first message of a tunnel must be open")
        return first.open

    @staticmethod
    async def _pieces(requests: AsyncIterator[egress_pb2.ConnectRequest]) -> AsyncIterator[bytes]:
        async for request in requests:
            if request.WhichOneof("part") != "data":
                raise request_invalid("only the first message of a tunnel may be open")
            if request.data:
                yield request.data

    async def Connect(
        self, request_iterator: AsyncIterator[egress_pb2.ConnectRequest], context: Any
    ) -> AsyncIterator[egress_pb2.ConnectResponse]:
        await self._connect(request_iterator, context)
        # Both directions run at once, so responses are written with context.write
        # as bytes arrive; this generator (the servicer base declares one) yields nothing itself.
        if False:  # pragma: no cover
            yield egress_pb2.ConnectResponse()

    async def _connect(self, request_iterator: AsyncIterator[egress_pb2.ConnectRequest], context: Any) -> None:
        note = functools.partial(self._note, context)
        loop = asyncio.get_running_loop()
        started = loop.time()
        tunnel: Tunnel | None = None

        async def send(piece: bytes) -> None:
            await context.write(egress_pb2.ConnectResponse(data=piece))

        try:
            record = self._record(context)
            requests = aiter(request_iterator)
            opening = await self._first(requests)
            total = self._tunnel_seconds(opening, context)
            with self._limits.slot(record.plugin_id):
                tunnel = await self._tunneler.open(
                    record.plugin_id,
                    self._tunnel_allowlist(record),
                    opening.host,
                    opening.port,
                    report_only=record.plugin_id in self._config.report_only_plugins,
                    note=note,
                )
                await context.write(
                    egress_pb2.ConnectResponse(opened=egress_pb2.ConnectOpened(resolved_address=tunnel.address))
                )
                await tunnel.run(
                    self._pieces(requests),
                    send,
                    total_seconds=max(total - (loop.time() - started), 0.0),
                    idle_seconds=self._config.tunnel_idle_seconds,
                )
        except VivifiedError as exc:
            note(why=exc.metadata.get("why", "") or exc.metadata.get("which", ""))
            raise
        finally:
            if tunnel is not None:
                tunnel.close()
                note(bytes_sent=str(tunnel.sent), bytes_received=str(tunnel.received))
            note(duration_ms=str(round((loop.time() - started) * 1000)))
