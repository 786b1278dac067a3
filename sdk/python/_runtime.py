"""`PluginRuntime`: register (or resume), serve, heartbeat, renew, stop.

Resuming: with a data dir (`PluginSettings.data_dir`), the runtime keeps its
key and certificate there (`_stored_identity`) after Register and every
renewal. A process that starts and finds a usable stored identity resumes
the registration with it (`Resume`, no join token); if the core refuses that
for good (revoked, deregistered, approved again, unknown, or the certificate
not accepted), the stored identity is removed and the runtime registers with
the join token when it has one, or fails with the core's typed refusal when
it has none. A stop (SIGTERM, the core's Shutdown, a failure) deregisters and
removes the stored identity, so only a process that died without stopping
(a crash, SIGKILL) can be resumed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import grpc
from google.protobuf.message import Message

from vivified.egress.v1 import egress_pb2, egress_pb2_grpc
from vivified.events.v1.events_pb2 import PublishResponse
from vivified.lifecycle.v1.lifecycle_pb2 import InitRequest
from vivified.registry.v1 import registry_pb2
from vivified.sdk._calls import PluginCaller
from vivified.sdk._config import ConfigClient, PluginConfig
from vivified.sdk._conformance import control_from
from vivified.sdk._core_client import CoreClient
from vivified.sdk._errors import (
    SDK_DOMAIN,
    ConfigurationError,
    PermissionDeniedError,
    UnauthenticatedError,
    VivifiedSDKError,
    from_rpc_error,
)
from vivified.sdk._events import EventClient, Handler, PublishStream, Subscription
from vivified.sdk._identity import IssuedCertificate
from vivified.sdk._lifecycle import LifecycleServicer
from vivified.sdk._maintenance import heartbeat_forever, renew_forever
from vivified.sdk._manifest import load_manifest
from vivified.sdk._metrics import PluginMetrics, metrics_from_env
from vivified.sdk._server import PluginServer, host_port, reserve_port
from vivified.sdk._settings import PluginSettings
from vivified.sdk._storage import ObjectStoreClient
from vivified.sdk._stored_identity import IdentityStore
from vivified.sdk._telemetry import PluginTracing, plugin_resource, tracing_from_env
from vivified.sdk._transport import ServerCertificates
from vivified.sdk._tunnel import Tunnel, open_tunnel

_log = logging.getLogger("vivified.sdk")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_RESUME_MARGIN = dt.timedelta(seconds=1)
"""A stored certificate with less than this left is not offered to the core."""


def _refused_for_good(error: VivifiedSDKError) -> bool:
    """Whether the core's refusal of a resume means the stored identity can
    never be resumed (a disabled plugin may be enabled again: not final)."""
    if isinstance(error, UnauthenticatedError):
        return True
    return isinstance(error, PermissionDeniedError) and error.reason != "PLUGIN_DISABLED"


ServicerFactory = Callable[["PluginRuntime"], Sequence[object]]
"""Builds the plugin's servicers given the runtime they will use (see `PluginRuntime`)."""


@runtime_checkable
class RuntimeAware(Protocol):
    """A servicer with `async def on_init(self, runtime)`: the runtime awaits it
    when the core calls `Init` (after the plugin was admitted, before it reports
    ready), e.g. to read config and start its subscriptions. Raising makes Init
    fail (PLUGIN_INIT_FAILED), so the core marks the plugin unhealthy."""

    async def on_init(self, runtime: PluginRuntime) -> None: ...


class PluginRuntime:
    """Runs one plugin process's servicers against the core.

    `start()` loads the manifest, registers with the core (one-time join token,
    fresh key and CSR) or, after a crash, resumes with the key and certificate
    kept in `settings.data_dir` (see the module docstring), serves the servicers over mTLS accepting only the core,
    then heartbeats and renews the certificate in the background. `stop()`
    ends all of it gracefully and deregisters. The core calls `Init` (which runs
    `on_init`) once it has admitted the plugin, and may call `Shutdown`.

    `servicers` is either the servicer objects or a factory that receives this
    runtime and returns them, so handlers can call other plugins, publish,
    subscribe, fetch and read config (`runtime.call`, `publish`, `subscribe`,
    `fetch`, `connect`, `config`). A servicer that defines
    `async def on_init(self, runtime)` (`RuntimeAware`) has it awaited at Init.

    Example::

        runtime = PluginRuntime(lambda rt: [MyPlugin(rt)], PluginSettings.from_env(os.environ))
        await runtime.start()
        try:
            await runtime.wait_closed()
        finally:
            await runtime.stop()
    """

    def __init__(
        self,
        servicers: Sequence[object] | ServicerFactory,
        settings: PluginSettings,
        *,
        on_init: Callable[[InitRequest], Awaitable[None]] | None = None,
        on_shutdown: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracing: PluginTracing | None = None,
        metrics: PluginMetrics | None = None,
    ) -> None:
        self._settings = settings
        # OTLP trace and metric export when the standard OTEL_* variables configure it; else none.
        self.tracing = tracing or tracing_from_env(os.environ, lambda: load_manifest(settings.manifest_path).id)
        self.metrics = metrics or metrics_from_env(
            os.environ, lambda: plugin_resource(os.environ, load_manifest(settings.manifest_path).id)
        )
        self._control = control_from(settings.conformance_control)
        self._on_shutdown = on_shutdown
        self._clock = clock
        self._sleep = sleep
        self._subscriptions: list[Subscription] = []
        self._client: CoreClient | None = None
        if callable(servicers):
            servicers = list(servicers(self))
        if not servicers:
            raise ConfigurationError("a plugin needs at least one servicer")
        self._on_init = on_init
        self._aware = [s for s in servicers if isinstance(s, RuntimeAware)]
        self._lifecycle = LifecycleServicer(
            on_init=self._init, on_ready=self._ready, on_shutdown_requested=self._request_stop_soon
        )
        self._server = PluginServer(
            servicers, self._lifecycle, settings.trust_domain, self.tracing.tracer, self.metrics
        )
        self._certificates: ServerCertificates | None = None
        self._issued: IssuedCertificate | None = None
        self._endpoint = ""
        self._identities = IdentityStore(settings.data_dir) if settings.data_dir is not None else None
        self._admitted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._started = False
        self.renewals = 0
        """How many times the certificate was renewed."""
        self.resumed = False
        """Whether this start resumed a stored registration (True) or registered (False)."""
        self.failure: VivifiedSDKError | None = None
        """Why the runtime stopped on its own with an error (e.g. the certificate expired), else None."""

    @property
    def plugin_id(self) -> str:
        return self._require_client().spiffe_id.rsplit("/", 1)[1]

    @property
    def endpoint(self) -> str:
        """`host:port` where the plugin serves (sent to the core in Register)."""
        return self._endpoint

    @property
    def certificate_pem(self) -> bytes:
        """The current leaf certificate, used both as client and as server certificate."""
        if self._issued is None:
            raise VivifiedSDKError("the plugin is not registered", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._issued.leaf_pem

    @property
    def core_channel(self) -> grpc.aio.Channel:
        """The current mTLS channel to the core. It is replaced on renewal, so
        fetch it for each use rather than keeping it."""
        return self._require_client().channel

    async def call(
        self,
        target: str,
        request: Message,
        *,
        timeout: float | None = None,
        idempotency_key: str = "",
        on_behalf_of: str = "",
    ) -> Message:
        """Call another plugin's contract operation through the core.

            reply = await runtime.call("example-echo", SendMessageRequest(message=...))

        The operation is the unary contract method whose input is `request`'s
        type. Both approved manifests must declare it (`calls` / `provides`).
        Raises `PermissionDeniedError` (POLICY_DENIED), `UnavailableError`
        (TARGET_UNAVAILABLE), or the target's own error. Pass
        `on_behalf_of=delegation_of(context)` while serving a user's call, so
        the core also checks the user's rights (`PermissionDeniedError`
        DELEGATION_DENIED when the user lacks them)."""
        return await PluginCaller(lambda: self.core_channel, self.tracing.tracer).call(
            target, request, timeout=timeout, idempotency_key=idempotency_key, on_behalf_of=on_behalf_of
        )

    async def publish(
        self, payload: Message, *, event_id: str | None = None, timeout: float | None = None
    ) -> PublishResponse:
        """Publish one canonical event; returns once the core stored it durably.

            await runtime.publish(EmailSent(email_id="e-1", recipient="a@example.com"))

        The type must be under `publishes` in the approved manifest. Raises
        `PermissionDeniedError` (EVENT_NOT_DECLARED), `ResourceExhaustedError`
        (RATE_LIMITED), `UnavailableError` (EVENT_STORE_UNAVAILABLE)."""
        return await EventClient(lambda: self.core_channel, tracer=self.tracing.tracer).publish(
            payload, event_id=event_id, timeout=timeout
        )

    def publish_stream(self) -> PublishStream:
        """Many publishes on one stream (see `PublishStream`)."""
        return EventClient(lambda: self.core_channel).publish_stream()

    def subscribe(self, name: str, handlers: Mapping[type[Message], Handler]) -> Subscription:
        """Serve the durable subscription `name` in the background: each handler
        gets the payload and a `ReceivedEvent`; returning acknowledges, raising
        asks for redelivery. The types must be under `subscribes` in the manifest."""
        subscription = EventClient(lambda: self.core_channel, self._control, self.tracing.tracer).subscribe(
            name, handlers
        )
        self._subscriptions.append(subscription)
        return subscription

    @property
    def storage(self) -> ObjectStoreClient:
        """The core's encrypted object store: `put`, `get`, `stream`, `head`,
        `list`, `delete` of this plugin's own objects (and `get` of objects
        another plugin shared with it). See `vivified.sdk._storage`."""
        return ObjectStoreClient(lambda: self.core_channel)

    async def fetch(
        self, request: egress_pb2.FetchRequest, *, timeout: float | None = None
    ) -> egress_pb2.FetchResponse:
        """One HTTP(S) request through the core's egress proxy, to a host under
        `security.allowed_domains` of the approved manifest.

            reply = await runtime.fetch(FetchRequest(method="GET", url="https://api.example.com/v1/status"))

        Raises `PermissionDeniedError` (EGRESS_DENIED), `UnavailableError`
        (EGRESS_UPSTREAM_FAILED), or another `VivifiedSDKError` with the core's reason."""
        stub = egress_pb2_grpc.EgressProxyServiceStub(self.core_channel)
        try:
            reply: egress_pb2.FetchResponse = await stub.Fetch(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return reply

    async def connect(self, host: str, port: int, *, timeout: float | None = None) -> Tunnel:
        """Open a TCP tunnel through the core to `host:port` (listed under
        `security.allowed_tunnels` in the approved manifest, or granted by the
        operator); `timeout` caps the tunnel's life. See `vivified.sdk._tunnel`.

            async with await runtime.connect("smtp.example.com", 587) as tunnel:
                sock = await tunnel.socket()   # e.g. aiosmtplib.SMTP(sock=sock)

        Raises `PermissionDeniedError` (EGRESS_DENIED: not allowlisted, or the
        name resolves to a non-public address), `UnavailableError`
        (EGRESS_UPSTREAM_FAILED), or another `VivifiedSDKError` with the core's reason."""
        return await open_tunnel(self.core_channel, host, port, timeout)

    async def config(self, *, timeout: float | None = None) -> PluginConfig:
        """This plugin's configuration (keys its manifest declares under
        `config`; secrets in clear). See `vivified.sdk._config`.

            port = (await runtime.config()).get_int("smtp_port")
        """
        return await ConfigClient(lambda: self.core_channel).get(timeout)

    def watch_config(self, *, retry_seconds: float = 1.0) -> AsyncIterator[PluginConfig]:
        """The configuration now, then again after every change an
        administrator makes, until the caller stops iterating.

            async for config in runtime.watch_config():
                apply(config)
        """
        return ConfigClient(lambda: self.core_channel).watch(retry_seconds)

    @property
    def closed(self) -> bool:
        """Whether the runtime has stopped."""
        return self._closed.is_set()

    @property
    def initialised(self) -> bool:
        """Whether the core has called Init successfully."""
        return self._lifecycle.initialised

    def _require_client(self) -> CoreClient:
        if self._client is None:
            raise VivifiedSDKError("the plugin is not registered", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._client

    async def start(self) -> None:
        """Register with the core and start serving. Raises `ConfigurationError`,
        `CoreUntrustedError` or the typed error of the core's refusal; after a
        failure the runtime is closed and nothing is left listening."""
        if self._started:
            raise VivifiedSDKError("start() was already called", reason="ALREADY_STARTED", domain=SDK_DOMAIN)
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self._server.stop(0)
            self._closed.set()
            raise

    async def _start(self) -> None:
        settings = self._settings
        manifest = load_manifest(settings.manifest_path)
        missing = sorted(set(manifest.contracts) - set(self._server.service_names))
        if missing:
            raise ConfigurationError(f"the manifest declares contracts no servicer implements: {', '.join(missing)}")
        try:
            root_pem = settings.ca_file.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the core's CA file {settings.ca_file}: {exc.strerror}") from None
        client = self._client = CoreClient(
            settings, root_pem, manifest, self._clock, self.metrics.client_interceptors()
        )
        if settings.listen_socket is not None:
            # A sandboxed plugin: the core dials this socket (its path is the endpoint).
            self._endpoint = f"unix:{settings.listen_socket}"
            interval = await self._admit_and_serve(client, self._endpoint)
        else:
            placeholder = reserve_port(settings.listen_host)
            try:
                port = placeholder.getsockname()[1]
                self._endpoint = host_port(settings.dial_host, port)
                interval = await self._admit_and_serve(client, host_port(settings.listen_host, port), port)
            finally:
                placeholder.close()
        _log.info(
            "%s as %s; serving on %s", "resumed" if self.resumed else "registered", client.spiffe_id, self._endpoint
        )
        self._tasks = [
            asyncio.create_task(
                heartbeat_forever(client, interval, sleep=self._sleep, request_stop=self._request_stop)
            ),
            asyncio.create_task(
                renew_forever(
                    client,
                    self._current,
                    self._install,
                    fraction=settings.renew_at_fraction,
                    clock=self._clock,
                    sleep=self._sleep,
                    request_stop=self._request_stop,
                )
            ),
        ]

    async def _admit_and_serve(self, client: CoreClient, address: str, port: int | None = None) -> float:
        """Resume or register `self._endpoint` with the core, then serve on
        `address` with the certificate; returns the heartbeat interval."""
        issued, interval = await self._admit(client)
        self._issued = issued
        self._admitted = True
        self._store_identity(issued)
        self._certificates = ServerCertificates(client.root_pem, issued)
        await self._server.start(address, self._certificates, port)
        return float(max(interval, 1))

    async def _admit(self, client: CoreClient) -> tuple[IssuedCertificate, int]:
        """(certificate, heartbeat interval) of a resumed or new registration."""
        token = self._settings.join_token
        stored = self._identities.load(client.spiffe_id, self._clock(), _RESUME_MARGIN) if self._identities else None
        if stored is not None and self._identities is not None:
            try:
                resumed: registry_pb2.ResumeResponse = await client.resume(self._endpoint, stored)
            except VivifiedSDKError as error:
                if not _refused_for_good(error):
                    raise
                self._identities.discard()
                if not token:
                    raise type(error)(
                        f"the core refused to resume the stored registration ({error.message}) and no join token"
                        " is set (VIVIFIED_JOIN_TOKEN): approve the plugin again for a new one",
                        reason=error.reason,
                        domain=error.domain,
                        metadata=error.metadata,
                        code=error.code,
                    ) from None
                _log.warning("the core refused to resume the stored registration (%s); registering", error)
            else:
                self.resumed = True
                return stored.issued, resumed.heartbeat_interval_seconds
        if not token:
            where = self._identities.path if self._identities else "no data dir (VIVIFIED_DATA_DIR) is set"
            raise ConfigurationError(
                f"no join token (VIVIFIED_JOIN_TOKEN) and no stored registration to resume ({where})",
                reason="SETTING_MISSING",
            )
        issued, registered = await client.register(self._endpoint)
        client.connect(issued)
        return issued, registered.heartbeat_interval_seconds

    def _store_identity(self, issued: IssuedCertificate) -> None:
        if self._identities is None or self._client is None:
            return
        try:
            self._identities.save(self._client.spiffe_id, issued, self._client.root_pem, self._settings.core_address)
        except OSError as exc:
            # The plugin runs on; only a restart after a crash would then need a new token.
            _log.warning("could not store the identity in %s: %s", self._identities.path, exc)

    def _current(self) -> IssuedCertificate:
        if self._issued is None:
            raise VivifiedSDKError("the plugin is not registered", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._issued

    def _install(self, issued: IssuedCertificate) -> None:
        if self._client is None or self._certificates is None:
            return
        self._issued = issued
        self._certificates.install(issued, self._client.root_pem)
        self._client.connect(issued)
        self._store_identity(issued)
        self.renewals += 1

    async def _init(self, request: InitRequest) -> None:
        if self._control is not None and self._control.init_held():
            raise ConfigurationError("the conformance suite holds Init back", reason="CONFORMANCE_INIT_HELD")
        if self._on_init is not None:
            await self._on_init(request)
        for servicer in self._aware:
            await servicer.on_init(self)

    @property
    def settings(self) -> PluginSettings:
        """The settings the runtime was started with (e.g. `settings.data_dir`)."""
        return self._settings

    async def _ready(self) -> None:
        await self._server.set_serving(True)
        if self._control is not None:
            # The conformance suite's error probes run once, after Init, in the background.
            control = self._control
            self._tasks.append(
                asyncio.ensure_future(
                    control.probe_errors(
                        lambda target, request: self.call(target, request, timeout=10),
                        lambda request: self.fetch(request, timeout=10),
                    )
                )
            )

    def _request_stop(self, reason: str, error: VivifiedSDKError | None) -> None:
        if error is not None and self.failure is None:
            self.failure = error
        self._request_stop_soon(reason)

    def _request_stop_soon(self, reason: str) -> asyncio.Task[None]:
        """Stop from inside a handler or a background task, without awaiting ourselves."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop(reason))
        return self._stop_task

    def request_stop(self, reason: str = "shutdown") -> None:
        """Ask the runtime to stop without waiting for it (see `stop`)."""
        self._request_stop_soon(reason)

    async def heartbeat(self) -> None:
        """Send one heartbeat now; raises the typed error of a refusal."""
        await self._require_client().heartbeat()

    async def deregister(self, reason: str) -> None:
        """End the registration at the core (its certificates stop working)."""
        await self._require_client().deregister(reason)

    async def stop(self, reason: str = "shutdown") -> None:
        """Stop gracefully: background tasks, then the server (in-flight calls get
        `shutdown_grace_seconds`), then `on_shutdown`, then a best-effort
        `Deregister`, then the channels. Idempotent; concurrent callers wait
        for the same stop."""
        await asyncio.shield(self._request_stop_soon(reason))

    async def _stop(self, reason: str) -> None:
        try:
            # Subscriptions first: their in-flight deliveries go back to the core unacknowledged.
            await asyncio.gather(*(s.close() for s in self._subscriptions))
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.stop(self._settings.shutdown_grace_seconds)
            if self._on_shutdown is not None:
                try:
                    await self._on_shutdown(reason)
                except Exception:  # noqa: BLE001 - a failing hook must not stop deregistration
                    _log.exception("the plugin's on_shutdown hook failed")
            if self._client is not None and self._issued is not None:
                try:
                    await self._client.deregister(reason)
                except VivifiedSDKError as error:
                    _log.info("deregistration not acknowledged: %s", error)
            if self._admitted and self._identities is not None:
                # Deregistered (or meant to be): nothing to resume from.
                self._identities.discard()
            if self._client is not None:
                await self._client.close()
            _log.info("plugin stopped: %s", reason)
        finally:
            self.tracing.shutdown()
            self.metrics.shutdown()
            self._closed.set()

    async def wait_closed(self) -> None:
        """Return once the runtime has stopped (by `stop()`, the core's Shutdown, or revocation)."""
        await self._closed.wait()
