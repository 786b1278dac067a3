"""The plugin supervisor of `vivified up`: approves, starts and restarts each plugin.

- A crash (a non-zero exit or a signal) restarts the plugin after an
  exponential backoff (`SupervisionConfig.backoff_base` doubling per crash in
  the window, at most `backoff_max`).
- A crash loop (`crash_loop_crashes` crashes within `crash_loop_window`
  seconds) stops it for good: the supervisor reports `PLUGIN_CRASH_LOOP`
  through the admin service (`ReportPluginFailure`), so the core marks it
  unhealthy, audits the report and raises a `SecurityAlert`.
- A clean exit (status 0) stays stopped: it is a deliberate stop.
- Restarts resume: the first start approves the plugin (`--replace`, a new
  join token); a restart after a crash starts the plugin with no join token
  when it can resume its registration (`PluginRegistryService/Resume`): the
  SDK's stored identity in the plugin's data dir
  (`vivified-identity.json`, docs/plugin-protocol.md §7) holds a certificate
  valid for at least `RESUME_MARGIN` more and the core lists the plugin
  active. Otherwise (nothing stored, expired, revoked, deregistered) it is
  approved again as at the first start. A process whose resume the core
  refuses anyway (revoked in between) removes its stored identity and exits
  non-zero; that counts as a crash, and the next restart approves again.
- Code integrity: the approval records the sha256 of the plugin's artifact
  (`artifact_sha256`: its package or project directory); before every launch
  and restart the supervisor hashes the artifact again and compares it with
  the registry's record. A mismatch refuses to start the plugin and is
  reported as `PLUGIN_ARTIFACT_MISMATCH` (audited and alerted the same way).
- Sandboxing (`_sandbox`): with a `Sandbox`, each plugin (Python or Node.js)
  runs inside bubblewrap and reaches the core only over the core's Unix
  sockets, serving its own server on its socket (`VIVIFIED_LISTEN_SOCKET`);
  without one (no sandbox on this machine) a plugin runs unsandboxed with a
  warning naming why, or is refused (`SandboxRefused`) when `Unsandboxed`
  does not allow it.
- The plugin's stdout and stderr are collected line by line, each line
  prefixed with the plugin id (`<plugin-id> | <line>`), onto the supervisor's
  stdout and stderr.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import stat
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc
from cryptography import x509

from vivified.admin.v1 import plugin_admin_pb2 as pb
from vivified.admin.v1 import plugin_admin_pb2_grpc
from vivified.core.cli._client import OperatorTarget, describe, open_channel, operator_target
from vivified.core.cli._sandbox import Sandbox, interpreter_paths, node_paths, sandboxed_command_pid
from vivified.core.config import CoreConfig
from vivified.core.manifest import load_manifest_file
from vivified.core.plugin_sockets import bootstrap_socket, core_socket, unix_target

if TYPE_CHECKING:
    from vivified.core.app import RunningCore
    from vivified.core.cli._up import PluginSpec

_log = logging.getLogger("vivified.up")
CRASH_LOOP = "PLUGIN_CRASH_LOOP"
ARTIFACT_MISMATCH = "PLUGIN_ARTIFACT_MISMATCH"
# Written by Python or tools beside the code, never part of what was approved.
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
STORED_IDENTITY = "vivified-identity.json"
"""The SDKs' stored key and certificate in a plugin's data dir (docs/plugin-protocol.md §7)."""
RESUME_MARGIN = dt.timedelta(seconds=30)
"""A stored certificate with less left than this is not worth a tokenless restart."""


def stored_certificate_expiry(data_dir: Path) -> dt.datetime | None:
    """notAfter of the certificate the SDK stored in a plugin's data dir, or
    None when there is none or it cannot be read. Only the expiry is read
    (the key is the plugin's business): whether the core accepts the
    certificate is the core's decision when the plugin resumes."""
    try:
        document = json.loads((data_dir / STORED_IDENTITY).read_text())
        return x509.load_pem_x509_certificate(document["chain_pem"].encode()).not_valid_after_utc
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class SupervisionConfig:
    """How the supervisor restarts crashed plugins and when it gives up."""

    backoff_base: float = 1.0
    """Seconds before the first restart after a crash; doubled for each further crash in the window."""
    backoff_max: float = 30.0
    """The longest wait before a restart."""
    crash_loop_crashes: int = 5
    """This many crashes within `crash_loop_window` seconds is a crash loop: the plugin is stopped and alerted."""
    crash_loop_window: float = 60.0

    def __post_init__(self) -> None:
        if self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise ValueError("need 0 < backoff_base <= backoff_max")
        if self.crash_loop_crashes < 1 or self.crash_loop_window <= 0:
            raise ValueError("need crash_loop_crashes >= 1 and crash_loop_window > 0")


@dataclass(frozen=True)
class Unsandboxed:
    """What to do with a plugin that cannot be sandboxed: `reason` says why
    (logged); `allowed` False refuses to start it (the production profile
    without --allow-unsandboxed)."""

    reason: str
    allowed: bool


class SandboxRefused(RuntimeError):
    """A plugin that may not run without a sandbox (see `Unsandboxed`)."""


def placement(spec: PluginSpec, sandbox: Sandbox | None, unsandboxed: Unsandboxed) -> tuple[Sandbox | None, str]:
    """The sandbox `spec` runs in, or (None, why it runs without one); raises
    SandboxRefused when it may not run without one."""
    if sandbox is not None:
        return sandbox, ""
    if not unsandboxed.allowed:
        raise SandboxRefused(
            f"{spec.module} would run without a sandbox ({unsandboxed.reason}); refused unless --allow-unsandboxed "
            "is given"
        )
    return None, unsandboxed.reason


class OutputSink(Protocol):
    """Receives each line a plugin writes (`stream` is "stdout" or "stderr")."""

    def __call__(self, plugin_id: str, stream: str, line: str) -> None: ...


def print_output(plugin_id: str, stream: str, line: str) -> None:
    """The default sink: `<plugin-id> | <line>` on the supervisor's own stdout or stderr."""
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(f"{plugin_id} | {line}\n")
    target.flush()


def artifact_sha256(directory: Path) -> str:
    """sha256 (hex) of a plugin artifact directory: every file's path relative
    to it, executable bit and content (symlinks by their target text, not
    followed), in sorted order. Byte caches and VCS/tool directories are left out."""
    entries: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        base = Path(root)
        for name in files:
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            path = base / name
            relative = path.relative_to(directory).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append((relative, "link:" + os.readlink(path)))
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 16), b""):
                    digest.update(chunk)
            entries.append((relative, ("x:" if info.st_mode & 0o111 else "f:") + digest.hexdigest()))
    # Directory symlinks (not walked) are part of the artifact too.
    for root, dirs, _ in os.walk(directory, followlinks=False):
        for name in dirs:
            path = Path(root) / name
            if path.is_symlink() and name not in _SKIPPED_DIRS:
                entries.append((path.relative_to(directory).as_posix(), "link:" + os.readlink(path)))
    total = hashlib.sha256()
    for relative, value in sorted(entries):
        total.update(f"{relative}\0{value}\n".encode("utf-8", "surrogateescape"))
    return total.hexdigest()


def artifact_of(spec: PluginSpec) -> Path:
    """The directory whose content is the plugin's code: the project dir of
    `--plugin DIR`, else the package directory holding its manifest."""
    return spec.path if spec.path is not None else spec.manifest.parent


class Supervisor:
    """Approves, starts and restarts plugins (see the module docstring)."""

    def __init__(
        self,
        config: CoreConfig,
        running: RunningCore,
        environ: Mapping[str, str],
        after_approval: Callable[[str], Awaitable[None]] | None = None,
        *,
        supervision: SupervisionConfig | None = None,
        output: OutputSink = print_output,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        sandbox: Sandbox | None = None,
        unsandboxed: Unsandboxed | None = None,
    ) -> None:
        self._config = config
        self._running = running
        self._environ = environ
        self._after_approval = after_approval
        self._supervision = supervision or SupervisionConfig()
        self._output = output
        self._monotonic = monotonic
        self._now = now
        self._sandbox = sandbox
        self._unsandboxed = unsandboxed or Unsandboxed(reason="sandboxing is off", allowed=True)

    def _target(self) -> OperatorTarget:
        return operator_target(self._config.data_dir, self._environ, self._running.listen_address)

    async def _approve(self, spec: PluginSpec, artifact: str) -> tuple[str, str]:
        """(plugin id, join token), the approval recording `artifact` as the artifact's sha256."""
        manifest = load_manifest_file(spec.manifest)
        async with open_channel(self._target()) as channel:
            stub = plugin_admin_pb2_grpc.PluginAdminServiceStub(channel)
            try:
                reply = await stub.ApprovePlugin(
                    pb.ApprovePluginRequest(manifest=manifest, replace=True, artifact_sha256=artifact), timeout=30
                )
            except grpc.aio.AioRpcError as err:
                raise describe(err) from None
        # Approving with replace revoked every certificate of the plugin: a stored
        # one would only be refused (and audited) before the SDK used the token.
        (self._data_dir(manifest.id) / STORED_IDENTITY).unlink(missing_ok=True)
        if self._after_approval is not None:
            await self._after_approval(manifest.id)
        return manifest.id, reply.join_token

    async def _listed(self, plugin_id: str) -> pb.Plugin | None:
        async with open_channel(self._target()) as channel:
            stub = plugin_admin_pb2_grpc.PluginAdminServiceStub(channel)
            try:
                reply = await stub.ListPlugins(pb.ListPluginsRequest(), timeout=30)
            except grpc.aio.AioRpcError as err:
                raise describe(err) from None
        return next((plugin for plugin in reply.plugins if plugin.plugin_id == plugin_id), None)

    async def _recorded_artifact(self, plugin_id: str) -> str:
        plugin = await self._listed(plugin_id)
        return plugin.artifact_sha256 if plugin is not None else ""

    async def _can_resume(self, plugin_id: str) -> bool:
        """Whether a restart can resume the plugin's registration (see the module docstring)."""
        expiry = stored_certificate_expiry(self._data_dir(plugin_id))
        if expiry is None or expiry - RESUME_MARGIN <= self._now():
            return False
        plugin = await self._listed(plugin_id)
        return plugin is not None and plugin.status == pb.PLUGIN_STATUS_ACTIVE

    async def report(self, plugin_id: str, kind: str, summary: str, details: Mapping[str, str]) -> None:
        """Tell the core (audited, alerted, marked unhealthy); a failure to tell it is logged."""
        try:
            async with open_channel(self._target()) as channel:
                stub = plugin_admin_pb2_grpc.PluginAdminServiceStub(channel)
                await stub.ReportPluginFailure(
                    pb.ReportPluginFailureRequest(plugin_id=plugin_id, kind=kind, summary=summary, details=details),
                    timeout=30,
                )
        except grpc.aio.AioRpcError as err:
            _log.error("could not report %s of %s to the core: %s", kind, plugin_id, describe(err))

    async def _verified(self, spec: PluginSpec, plugin_id: str) -> bool:
        """Whether the artifact on disk is the one the registry recorded (refusal reported when not)."""
        expected = await self._recorded_artifact(plugin_id)
        actual = await asyncio.to_thread(artifact_sha256, artifact_of(spec))
        if expected and actual == expected:
            return True
        summary = (
            f"plugin {plugin_id}'s code at {artifact_of(spec)} does not match its approved artifact sha256; not started"
        )
        _log.error("%s (approved %s, found %s)", summary, expected or "(none recorded)", actual)
        await self.report(
            plugin_id,
            ARTIFACT_MISMATCH,
            summary,
            {"expected_sha256": expected, "actual_sha256": actual, "artifact": str(artifact_of(spec))},
        )
        return False

    def _data_dir(self, plugin_id: str) -> Path:
        return self._config.data_dir / "plugins" / plugin_id

    def _ca_file(self) -> Path:
        return self._config.data_dir / "operator" / "ca.crt"

    def _environment(self, spec: PluginSpec, plugin_id: str, token: str, listen_socket: Path | None) -> dict[str, str]:
        data = str(self._data_dir(plugin_id))
        env = {k: v for k, v in self._environ.items() if not k.startswith("VIVIFIED_")}
        env.update(
            VIVIFIED_MANIFEST=str(spec.manifest),
            VIVIFIED_JOIN_TOKEN=token,
            VIVIFIED_CA_FILE=str(self._ca_file()),
            VIVIFIED_CORE_ADDRESS=self._running.listen_address,
            VIVIFIED_BOOTSTRAP_ADDRESS=self._running.bootstrap_address,
            VIVIFIED_TRUST_DOMAIN=self._running.trust_domain,
            VIVIFIED_PLUGIN_DATA_DIR=data,
            # The SDK's name for it (PluginSettings.data_dir), which user-management requires.
            VIVIFIED_DATA_DIR=data,
        )
        if listen_socket is not None:  # sandboxed: the core only over its Unix sockets
            sockets = Path(self._running.plugin_socket_dir)
            env.update(
                VIVIFIED_CORE_ADDRESS=unix_target(core_socket(sockets)),
                VIVIFIED_BOOTSTRAP_ADDRESS=unix_target(bootstrap_socket(sockets)),
                VIVIFIED_LISTEN_SOCKET=str(listen_socket),
            )
        if spec.path is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(spec.path), env.get("PYTHONPATH", "")) if p)
        return env

    async def supervise(self, spec: PluginSpec, stop: asyncio.Event) -> None:
        """Run `spec` until `stop` is set, it exits cleanly, crash-loops or fails its integrity check."""
        rules = self._supervision
        sandbox, why_not = placement(spec, self._sandbox, self._unsandboxed)
        if sandbox is None:
            _log.warning("%s runs WITHOUT a sandbox: %s", spec.module, why_not)
        # The approval `up` makes as the operator records the artifact as it is now;
        # every launch below checks the code against that record.
        plugin_id, first_token = await self._approve(spec, await asyncio.to_thread(artifact_sha256, artifact_of(spec)))
        token: str | None = first_token
        crashes: deque[float] = deque()
        while not stop.is_set():
            if not await self._verified(spec, plugin_id):
                return
            if token is None and await self._can_resume(plugin_id):
                _log.info("%s restarts from its stored certificate, without a join token", spec.module)
                token = ""
            elif token is None:
                # A fresh join token for the restarted process, keeping the approved
                # artifact's record (just checked against the code on disk).
                plugin_id, token = await self._approve(spec, await self._recorded_artifact(plugin_id))
            argv: Sequence[str] = spec.argv()
            listen_socket = None
            if sandbox is not None:
                listen_socket = sandbox.prepare(plugin_id, self._data_dir(plugin_id))
                argv = sandbox.argv(
                    plugin_id,
                    argv,
                    own_data=self._data_dir(plugin_id),
                    ca_file=self._ca_file(),
                    readable=[
                        *(node_paths(spec.command) if spec.command else interpreter_paths()),
                        artifact_of(spec),
                        spec.manifest.parent,
                    ],
                )
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=self._environment(spec, plugin_id, token, listen_socket),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _log.info("started %s (pid %d%s)", spec.module, proc.pid, ", sandboxed" if sandbox else "")
            pumps = [
                asyncio.create_task(self._pump(plugin_id, name, stream))
                for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
                if stream is not None
            ]
            waiter = asyncio.create_task(proc.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                await _terminate(proc, sandbox is not None)
                await asyncio.gather(*pumps, return_exceptions=True)
                return
            await asyncio.gather(*pumps, return_exceptions=True)
            if proc.returncode == 0:
                # A clean exit is a deliberate stop (e.g. the operator revoked the
                # plugin and the core asked it to shut down): do not undo it.
                _log.info("%s stopped cleanly; not restarting", spec.module)
                return
            now = self._monotonic()
            crashes.append(now)
            while crashes and crashes[0] < now - rules.crash_loop_window:
                crashes.popleft()
            if len(crashes) >= rules.crash_loop_crashes:
                summary = (
                    f"plugin {plugin_id} crashed {len(crashes)} times within {rules.crash_loop_window:g}s "
                    f"(last exit {proc.returncode}); stopped, not restarted"
                )
                _log.error("%s", summary)
                await self.report(
                    plugin_id,
                    CRASH_LOOP,
                    summary,
                    {
                        "crashes": str(len(crashes)),
                        "window_seconds": f"{rules.crash_loop_window:g}",
                        "last_exit": str(proc.returncode),
                    },
                )
                return
            backoff = min(rules.backoff_base * 2 ** (len(crashes) - 1), rules.backoff_max)
            _log.warning("%s crashed (exit %s); restarting in %.2fs", spec.module, proc.returncode, backoff)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except TimeoutError:
                pass
            token = None

    async def _pump(self, plugin_id: str, name: str, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: pass it on in pieces
                line = await stream.read(1 << 16)
            if not line:
                return
            self._output(plugin_id, name, line.decode("utf-8", "replace").rstrip("\r\n"))


async def _terminate(proc: asyncio.subprocess.Process, sandboxed: bool) -> None:
    """SIGTERM the plugin, then SIGKILL it after 10 s. In a sandbox the signal goes to the
    plugin's own process (bwrap passes none on), so it can stop gracefully and deregister."""
    if proc.returncode is not None:
        return
    inside = sandboxed_command_pid(proc.pid) if sandboxed else None
    if inside is not None:
        try:
            os.kill(inside, signal.SIGTERM)
        except ProcessLookupError:  # it exited meanwhile: bwrap follows it
            pass
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
