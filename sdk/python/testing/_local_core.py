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

The plugin under test can instead run as its own process (`command=`, e.g.
`python -m my_plugin`, given the `VIVIFIED_*` environment the SDK's
`PluginSettings.from_env` reads and its own data dir), which is how the
reference plugins are tested; `core.plugin` then stops and restarts it, or
kills it and resumes it (no new approval or token: docs/plugin-protocol.md §7).
`add_plugin` runs further plugin processes beside it (each approved the same
way), `options.extra_flags` and `options.core_env` pass flags and
environment to the core (an egress config, a trust store).

Example (pytest with pytest-asyncio)::

    from vivified.sdk.testing import LocalCore

    async def test_send(tmp_path):
        async with LocalCore(Path("manifest.yaml"), lambda rt: [MyPlugin(rt)], tmp_path) as core:
            reply = await core.call(SendMessageRequest(message=...))   # through the core
            await core.publish(MessageSendRequested(...))               # to the plugin
            event = await core.next_event(EmailSent)                    # what it published

    async def test_process(tmp_path):
        command = (sys.executable, "-m", "my_plugin")
        async with LocalCore(Path("manifest.yaml"), None, tmp_path, command=command) as core:
            await core.publish(MessageSendRequested(...))
            await core.plugin.restart()                                 # a new process, same data dir
            await core.plugin.kill()                                    # a crash: still registered
            await core.plugin.resume()                                  # back, with no new join token
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from vivified.admin.v1 import event_admin_pb2, event_admin_pb2_grpc
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
from vivified.sdk._stored_identity import IDENTITY_FILE

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
    core_env: Mapping[str, str] = field(default_factory=dict)
    """More environment for the core process (e.g. `SSL_CERT_FILE` for a test upstream's CA)."""


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}


def mirror_manifest(manifest: PluginManifest) -> PluginManifest:
    """The tester's manifest: the plugin's mirror image (see the module docstring)."""
    tester = PluginManifest()
    tester.CopyFrom(manifest)
    tester.id = manifest.id[: 63 - len(TESTER_SUFFIX)] + TESTER_SUFFIX
    tester.name = f"{manifest.name} (tester)"
    del tester.provides[:]
    del tester.calls[:]
    del tester.publishes[:]
    del tester.subscribes[:]
    del tester.config[:]
    del tester.security.injected_credentials[:]  # they name config keys the tester does not have
    for method in manifest.provides:
        tester.calls.add(plugin_id=manifest.id, method=method)
    tester.publishes.extend(manifest.subscribes)
    tester.subscribes.extend(manifest.publishes)
    return tester


class LocalPlugin:
    """A plugin running as its own process next to a `LocalCore`: approved by the
    operator, configured, started with the `VIVIFIED_*` environment, and
    waited for until the core reports it healthy (and, when its manifest
    subscribes to anything, until it has opened a subscription)."""

    def __init__(
        self,
        core: LocalCore,
        manifest_path: Path,
        command: Sequence[str],
        *,
        config: Mapping[str, str],
        env: Mapping[str, str],
        data_dir: Path,
    ) -> None:
        self._core = core
        self.manifest_path = Path(manifest_path)
        self.manifest = load_manifest(self.manifest_path)
        self._command = tuple(command)
        self._config = dict(config)
        self._env = dict(env)
        self.data_dir = data_dir
        """The plugin's own data dir (`VIVIFIED_DATA_DIR`), kept across restarts."""
        self.log_path = data_dir.parent / f"{self.plugin_id}.log"
        """The plugin process's combined stdout/stderr, across restarts."""
        self._process: asyncio.subprocess.Process | None = None

    @property
    def plugin_id(self) -> str:
        return self.manifest.id

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def start(self) -> None:
        """Approve (again: a join token is used once), set the config, spawn, wait until ready."""
        token = await self._core._approve(self.manifest)
        # The approval revoked every earlier certificate: a stored one would only be refused.
        (self.data_dir / IDENTITY_FILE).unlink(missing_ok=True)
        for key, value in self._config.items():
            await self._core.set_config(key, value, plugin_id=self.plugin_id)
        self._config.clear()  # set once; later changes are the test's own
        await self._spawn(token)

    async def resume(self) -> None:
        """Spawn the plugin again without approving it and without a join token,
        as a supervisor restarts a crashed plugin (after `kill`): it resumes its
        registration from the key and certificate the SDK kept in `data_dir`."""
        listed = await self._core._listed(self.plugin_id)
        await self._spawn("", moved_from=listed.endpoint if listed is not None else "")

    async def _spawn(self, token: str, moved_from: str = "") -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info = self._core._info
        env = {
            **_clean_environ(),
            "VIVIFIED_MANIFEST": str(self.manifest_path),
            **({"VIVIFIED_JOIN_TOKEN": token} if token else {}),
            "VIVIFIED_CA_FILE": str(self._core.data_dir / "operator" / "ca.crt"),
            "VIVIFIED_CORE_ADDRESS": info["listen_address"],
            "VIVIFIED_BOOTSTRAP_ADDRESS": info["bootstrap_address"],
            "VIVIFIED_TRUST_DOMAIN": info["trust_domain"],
            "VIVIFIED_DATA_DIR": str(self.data_dir),
            **self._env,
        }
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + self._core._options.start_timeout_seconds
        await self._core._wait_healthy(
            self.plugin_id, deadline, alive=lambda: self.running, log=self.log, moved_from=moved_from
        )
        if self.manifest.subscribes:
            await self._core._wait_subscribed(self.plugin_id, deadline, alive=lambda: self.running, log=self.log)

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after 15 s."""
        process, self._process = self._process, None
        if process is not None:
            await _terminate(process)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def kill(self) -> None:
        """SIGKILL: the plugin stays registered but stops answering (a graceful
        stop deregisters it), as when it crashes."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


async def _terminate(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()


class LocalCore:
    """A real core process plus the plugin under test (see the module docstring)."""

    def __init__(
        self,
        manifest_path: Path,
        servicers: Sequence[object] | ServicerFactory | None,
        directory: Path,
        *,
        config: dict[str, str] | None = None,
        options: LocalCoreOptions = LocalCoreOptions(),
        command: Sequence[str] | None = None,
        plugin_env: Mapping[str, str] | None = None,
    ) -> None:
        """Give `servicers` to run the plugin in this process, or `command` (and
        `servicers=None`) to run it as its own process with `plugin_env` added."""
        if (servicers is None) == (command is None):
            raise ConfigurationError("give LocalCore either servicers or a command", reason="INVALID_ARGUMENT")
        self._manifest_path = Path(manifest_path)
        self._servicers = servicers
        self._command = tuple(command) if command is not None else None
        self._plugin_env = dict(plugin_env or {})
        self._plugins: list[LocalPlugin] = []
        self._received: list[Message] = []
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
    def plugin(self) -> LocalPlugin:
        """The plugin under test's process (with `command=`)."""
        if not self._plugins or self._command is None:
            raise VivifiedSDKError(
                "no plugin process (LocalCore runs it in-process or is not running)",
                reason="NOT_CONNECTED",
                domain=SDK_DOMAIN,
            )
        return self._plugins[0]

    async def add_plugin(
        self,
        manifest_path: Path,
        command: Sequence[str],
        *,
        config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LocalPlugin:
        """Run another plugin as its own process beside the one under test
        (stopped with the core); returns once the core reports it ready."""
        manifest = load_manifest(Path(manifest_path))
        plugin = LocalPlugin(
            self,
            manifest_path,
            command,
            config=config or {},
            env=env or {},
            data_dir=self._directory / "plugins" / manifest.id,
        )
        self._plugins.append(plugin)
        await plugin.start()
        return plugin

    @property
    def trust_domain(self) -> str:
        return self._info.get("trust_domain", self._options.trust_domain)

    @property
    def bootstrap_address(self) -> str:
        return self._info.get("bootstrap_address", "")

    @property
    def operator_dir(self) -> Path:
        """The operator's certificate, key and the core's CA (`ca.crt`)."""
        return self.data_dir / "operator"

    def log(self) -> str:
        """The core's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def events_of(self, kind: type[Message]) -> list[Message]:
        """Every event of type `kind` the plugin published so far, as delivered
        to the tester (whether or not `next_event` returned it)."""
        return [payload for payload in self._received if isinstance(payload, kind)]

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

    async def next_event(
        self, kind: type[Message] | None = None, *, timeout: float = 15.0
    ) -> tuple[Message, ReceivedEvent]:
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

    async def set_config(self, key: str, value: str, *, plugin_id: str = "") -> None:
        """Set one of the plugin's (or another plugin's) config keys as the operator."""
        async with self.operator_channel() as channel:
            await config_pb2_grpc.ConfigServiceStub(channel).SetPluginConfigValue(
                config_pb2.SetPluginConfigValueRequest(
                    plugin_id=plugin_id or self.plugin_id, key=key, value=value, reason="test"
                ),
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
            *self._options.command,
            "--data-dir",
            str(self.data_dir),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--trust-domain",
            self._options.trust_domain,
            *self._options.extra_flags,
        ]
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *args,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**_clean_environ(), **self._options.core_env},
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
        if self._command is not None:
            # The tester subscribes first, so nothing the plugin publishes at start is missed.
            await self._start_tester(base, ca_file)
            plugin = LocalPlugin(
                self,
                self._manifest_path,
                self._command,
                config=self._config,
                env=self._plugin_env,
                data_dir=self._directory / "plugin-data",
            )
            self._plugins.append(plugin)
            await plugin.start()
            return
        token = await self._approve(self.manifest)
        for key, value in self._config.items():
            await self.set_config(key, value)
        if self._servicers is None:  # excluded by __init__; keeps the type narrow
            raise ConfigurationError("no servicers", reason="INVALID_ARGUMENT")
        self._runtime = PluginRuntime(self._servicers, replace(base, join_token=token))
        await self._runtime.start()
        await self._start_tester(base, ca_file)
        runtime = self._runtime
        await self._wait_healthy(self.plugin_id, deadline, alive=lambda: not runtime.closed, log=self._log_tail)

    async def _start_tester(self, base: PluginSettings, ca_file: Path) -> None:
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
            await self._subscription.opened()

    async def _record(self, payload: Message, received: ReceivedEvent) -> None:
        self._received.append(payload)
        await self._events.put((payload, received))

    async def _approve(self, manifest: PluginManifest) -> str:
        # A core that has just started may still answer UNAVAILABLE (its registry not read yet).
        deadline = time.monotonic() + self._options.start_timeout_seconds
        while True:
            try:
                async with self.operator_channel() as channel:
                    reply = await admin_grpc.PluginAdminServiceStub(channel).ApprovePlugin(
                        admin_pb.ApprovePluginRequest(manifest=manifest, replace=True), timeout=30
                    )
                return reply.join_token
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def _listed(self, plugin_id: str) -> admin_pb.Plugin | None:
        async with self.operator_channel() as channel:
            listed = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                admin_pb.ListPluginsRequest(), timeout=10
            )
        return next((p for p in listed.plugins if p.plugin_id == plugin_id), None)

    async def _wait_healthy(
        self,
        plugin_id: str,
        deadline: float,
        *,
        alive: Callable[[], bool],
        log: Callable[[], str],
        moved_from: str = "",
    ) -> None:
        """Until the plugin is healthy (at an endpoint other than `moved_from`,
        when given: a killed process's registration stays healthy until its
        heartbeats are missed, so only the new endpoint tells the restart apart)."""
        while True:
            plugin = await self._listed(plugin_id)
            if (
                plugin is not None
                and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY
                and not (moved_from and plugin.endpoint == moved_from)
            ):
                return
            if not alive() or time.monotonic() > deadline:
                state = "not listed" if plugin is None else admin_pb.PluginHealth.Name(plugin.health)
                raise ConfigurationError(
                    f"the plugin {plugin_id} did not become healthy ({state}); log:\n{log()[-4000:]}",
                    reason="PLUGIN_NOT_HEALTHY",
                )
            await asyncio.sleep(0.1)

    async def _wait_subscribed(
        self, plugin_id: str, deadline: float, *, alive: Callable[[], bool], log: Callable[[], str]
    ) -> None:
        while True:
            async with self.operator_channel() as channel:
                listed = await event_admin_pb2_grpc.EventAdminServiceStub(channel).ListSubscriptions(
                    event_admin_pb2.ListSubscriptionsRequest(), timeout=10
                )
            if any(s.subscription.startswith(f"{plugin_id}/") for s in listed.subscriptions):
                return
            if not alive() or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the plugin {plugin_id} did not subscribe; log:\n{log()[-4000:]}", reason="PLUGIN_NOT_HEALTHY"
                )
            await asyncio.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    async def stop(self) -> int | None:
        """Stop everything now (plugins, tester, then the core with SIGTERM);
        returns the core's exit code (0 after a clean shutdown). Leaving the
        `async with` block does the same."""
        process = self._process
        await self._stop()
        return None if process is None else process.returncode

    async def _stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._runtime is not None:
            await self._runtime.stop("test finished")
        for plugin in reversed(self._plugins):
            await plugin.stop()
        self._plugins.clear()
        if self._tester is not None:
            with contextlib.suppress(VivifiedSDKError):
                await self._tester.deregister("test finished")
            await self._tester.close()
            self._tester = None
        process, self._process = self._process, None
        if process is not None:
            await _terminate(process)


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
