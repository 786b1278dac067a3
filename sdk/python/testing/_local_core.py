"""`LocalCore`: a real `vivified core` process for a plugin's tests.

The core runs as a separate process started by command (`python -m
vivified.core.cli core`, from the installed `vivified` package): the SDK never
imports the core. It gets a temporary data dir (SQLite and the in-process
event bus: the embedded stores), ephemeral loopback ports, its own CA and
operator certificate, and the real interceptor chain and mTLS.

`LocalCore` approves the plugin's manifest as the operator, runs the plugin
in this process with a `PluginRuntime` (so a test can look at its servicer
objects), waits until the core has called Init and the health check passed,
and registers a *tester* plugin beside it: a second identity whose manifest
mirrors the plugin's (it `calls` everything the plugin `provides`,
`publishes` what it `subscribes` to, `subscribes` to what it `publishes`), so
the test reaches the plugin only through the core's lanes, like other plugins
would.

Example (pytest with pytest-asyncio)::

    from vivified.sdk.testing import LocalCore

    async def test_send(tmp_path):
        async with LocalCore(Path("manifest.yaml"), lambda rt: [MyPlugin(rt)], tmp_path) as core:
            reply = await core.call(SendMessageRequest(message=...))   # through the core
            await core.publish(MessageSendRequested(...))               # to the plugin
            event = await core.next_event(EmailSent)                    # what it published
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.config.v1 import config_pb2, config_pb2_grpc
from vivified.events.v1 import canonical_pb2
from vivified.events.v1.events_pb2 import PublishResponse
from vivified.manifest.v1.manifest_pb2 import PluginManifest
from vivified.sdk._calls import PluginCaller
from vivified.sdk._core_client import CoreClient
from vivified.sdk._errors import SDK_DOMAIN, ConfigurationError, VivifiedSDKError
from vivified.sdk._events import EventClient, ReceivedEvent, Subscription
from vivified.sdk._manifest import load_manifest
from vivified.sdk._runtime import PluginRuntime, ServicerFactory
from vivified.sdk._settings import PluginSettings

TESTER_SUFFIX = "-tester"
_UNUSED_ENDPOINT = "127.0.0.1:9"  # the tester serves nothing; the core's Init to it just fails


@dataclass(frozen=True, kw_only=True)
class LocalCoreOptions:
    """How the test core runs."""

    command: tuple[str, ...] = (sys.executable, "-m", "vivified.core.cli", "core")
    """The command that starts a core (flags for data dir and ports are appended)."""
    extra_flags: tuple[str, ...] = ("--heartbeat-interval", "1")
    """More `vivified core` flags."""
    start_timeout_seconds: float = 60.0
    """How long the core and the plugin may take to be up and healthy."""
    trust_domain: str = "vivified.local"


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}


def mirror_manifest(manifest: PluginManifest) -> PluginManifest:
    """The tester's manifest: the plugin's mirror image (see the module docstring)."""
    tester = PluginManifest()
    tester.CopyFrom(manifest)
    tester.id = (manifest.id[: 63 - len(TESTER_SUFFIX)] + TESTER_SUFFIX)
    tester.name = f"{manifest.name} (tester)"
    del tester.provides[:]
    del tester.calls[:]
    del tester.publishes[:]
    del tester.subscribes[:]
    del tester.config[:]
    for method in manifest.provides:
        tester.calls.add(plugin_id=manifest.id, method=method)
    tester.publishes.extend(manifest.subscribes)
    tester.subscribes.extend(manifest.publishes)
    return tester


class LocalCore:
    """A real core process plus the plugin under test (see the module docstring)."""

    def __init__(
        self,
        manifest_path: Path,
        servicers: Sequence[object] | ServicerFactory,
        directory: Path,
        *,
        config: dict[str, str] | None = None,
        options: LocalCoreOptions = LocalCoreOptions(),
    ) -> None:
        self._manifest_path = Path(manifest_path)
        self._servicers = servicers
        self._directory = Path(directory)
        self._config = dict(config or {})
        self._options = options
        self.data_dir = self._directory / "core"
        """The core's data dir (database, audit log, operator certificate)."""
        self.manifest = load_manifest(self._manifest_path)
        self.tester = mirror_manifest(self.manifest)
        self._process: asyncio.subprocess.Process | None = None
        self._info: dict[str, str] = {}
        self._runtime: PluginRuntime | None = None
        self._tester: CoreClient | None = None
        self._events: asyncio.Queue[tuple[Message, ReceivedEvent]] = asyncio.Queue()
        self._subscription: Subscription | None = None

    # -- what a test uses ------------------------------------------------------------------

    @property
    def runtime(self) -> PluginRuntime:
        """The plugin under test's runtime (its servicers run in this process)."""
        if self._runtime is None:
            raise VivifiedSDKError("LocalCore is not running", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._runtime

    @property
    def plugin_id(self) -> str:
        return self.manifest.id

    @property
    def listen_address(self) -> str:
        return self._info.get("listen_address", "")

    @property
    def log_path(self) -> Path:
        """The core's combined stdout/stderr."""
        return self._directory / "core.log"

    def tester_channel(self) -> grpc.aio.Channel:
        """The tester plugin's mTLS channel to the core (use any generated stub
        on it with `target_metadata(core.plugin_id)`)."""
        if self._tester is None:
            raise VivifiedSDKError("LocalCore is not running", reason="NOT_CONNECTED", domain=SDK_DOMAIN)
        return self._tester.channel

    def operator_channel(self) -> grpc.aio.Channel:
        """A channel to the core with the operator certificate (admin, config, events admin)."""
        operator = self.data_dir / "operator"
        creds = grpc.ssl_channel_credentials(
            (operator / "ca.crt").read_bytes(),
            (operator / "operator.key").read_bytes(),
            (operator / "operator.crt").read_bytes(),
        )
        return grpc.aio.secure_channel(
            self.listen_address, creds, options=[("grpc.ssl_target_name_override", self._core_name)]
        )

    async def call(self, request: Message, *, timeout: float = 10.0, idempotency_key: str = "") -> Message:
        """Call the plugin's operation for `request`'s type through the core's
        operator lane, as the tester. Raises the typed `VivifiedSDKError`."""
        caller = PluginCaller(self.tester_channel)
        return await caller.call(self.plugin_id, request, timeout=timeout, idempotency_key=idempotency_key)

    async def publish(self, payload: Message, *, event_id: str | None = None, timeout: float = 10.0) -> PublishResponse:
        """Publish a canonical event (one the plugin subscribes to) as the tester."""
        return await EventClient(self.tester_channel).publish(payload, event_id=event_id, timeout=timeout)

    async def next_event(self, kind: type[Message] | None = None, *, timeout: float = 15.0) -> tuple[Message, ReceivedEvent]:
        """The next event the plugin published (of type `kind`, others skipped),
        as delivered to the tester's subscription."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind.DESCRIPTOR.full_name if kind else 'event'} within {timeout}s")
            payload, received = await asyncio.wait_for(self._events.get(), remaining)
            if kind is None or isinstance(payload, kind):
                return payload, received

    async def set_config(self, key: str, value: str) -> None:
        """Set one of the plugin's config keys as the operator."""
        async with self.operator_channel() as channel:
            await config_pb2_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
                config_pb2.SetPluginConfigValueRequest(plugin_id=self.plugin_id, key=key, value=value, reason="test"),
                timeout=10,
            )

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def _core_name(self) -> str:
        return f"core.{self._info.get('trust_domain', self._options.trust_domain)}"

    async def __aenter__(self) -> LocalCore:
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_file = self.data_dir / "run" / "core.json"
        run_file.unlink(missing_ok=True)
        args = [
            *self._options.command, "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
            "--bootstrap", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
            "--trust-domain", self._options.trust_domain, *self._options.extra_flags,
        ]
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *args, stdout=log, stderr=asyncio.subprocess.STDOUT, env=_clean_environ()
            )
        deadline = time.monotonic() + self._options.start_timeout_seconds
        while not run_file.exists():
            if self._process.returncode is not None or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the core did not start (exit {self._process.returncode}); its log:\n{self._log_tail()}",
                    reason="CORE_NOT_STARTED",
                )
            await asyncio.sleep(0.05)
        self._info = json.loads(run_file.read_text())
        ca_file = self.data_dir / "operator" / "ca.crt"
        base = PluginSettings(
            manifest_path=self._manifest_path,
            join_token="unset",
            ca_file=ca_file,
            core_address=self._info["listen_address"],
            bootstrap_address=self._info["bootstrap_address"],
            trust_domain=self._info["trust_domain"],
            data_dir=self._directory / "plugin-data",
            shutdown_grace_seconds=1.0,
        )
        token = await self._approve(self.manifest)
        for key, value in self._config.items():
            await self.set_config(key, value)
        self._runtime = PluginRuntime(self._servicers, replace(base, join_token=token))
        await self._runtime.start()
        tester_token = await self._approve(self.tester)
        tester = CoreClient(
            replace(base, join_token=tester_token, data_dir=None), ca_file.read_bytes(), self.tester, _utcnow
        )
        issued, _ = await tester.register(_UNUSED_ENDPOINT)
        tester.connect(issued)
        self._tester = tester
        if self.tester.subscribes:
            handlers = {kind: self._record for kind in _event_types(self.tester.subscribes)}
            self._subscription = EventClient(self.tester_channel).subscribe(f"{self.tester.id}-events", handlers)
        await self._wait_healthy(deadline)

    async def _record(self, payload: Message, received: ReceivedEvent) -> None:
        await self._events.put((payload, received))

    async def _approve(self, manifest: PluginManifest) -> str:
        async with self.operator_channel() as channel:
            reply = await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                admin_pb.ApprovePluginRequest(manifest=manifest, replace=True), timeout=30
            )
        return reply.join_token

    async def _wait_healthy(self, deadline: float) -> None:
        while True:
            async with self.operator_channel() as channel:
                listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                    admin_pb.ListPluginsRequest(), timeout=10
                )
            plugin = next((p for p in listed.plugins if p.plugin_id == self.plugin_id), None)
            if plugin is not None and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY:
                return
            if self.runtime.closed or time.monotonic() > deadline:
                state = "not listed" if plugin is None else admin_pb.PluginHealth.Name(plugin.health)
                raise ConfigurationError(
                    f"the plugin {self.plugin_id} did not become healthy ({state}); core log:\n{self._log_tail()}",
                    reason="PLUGIN_NOT_HEALTHY",
                )
            await asyncio.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    async def _stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._runtime is not None:
            await self._runtime.stop("test finished")
        if self._tester is not None:
            with contextlib.suppress(VivifiedSDKError):
                await self._tester.deregister("test finished")
            await self._tester.close()
            self._tester = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _event_types(names: Sequence[str]) -> list[type[Message]]:
    types: list[type[Message]] = []
    for name in names:
        short = name.rsplit(".", 1)[-1]
        kind: Any = getattr(canonical_pb2, short, None)
        if kind is None:
            raise ConfigurationError(f"{name} is not a canonical event type", reason="MANIFEST_INVALID")
        types.append(kind)
    return types

