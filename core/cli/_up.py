"""`vivified core` and `vivified up`.

`up` is the development profile's one command: it runs the core and every
plugin under `vivified.plugins` that ships a manifest (Python plugins with
`python -m`, Node.js plugins, a `package.json` beside the manifest, with
`node`), approving each one
itself through the admin service (audited like any operator call) and
supervising it as a subprocess, sandboxed where the machine allows
(`_sandbox`; else with a warning, or refused in the production profile
without --allow-unsandboxed) (`_supervisor`: restarted with backoff when it
crashes, stopped and alerted when it crash-loops or its code no longer matches
the approved artifact sha256, its output prefixed with its id); a plugin that
stops cleanly stays stopped. Each plugin gets
`VIVIFIED_PLUGIN_DATA_DIR` and `VIVIFIED_DATA_DIR` (the SDK's
`PluginSettings.data_dir`), both `<data-dir>/plugins/<plugin-id>`. `--plugin DIR` adds
plugin projects outside the package, approved and supervised the same way. In the development
profile it also runs the local SMTP sink for the email gateway (`_devmail`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vivified.core.app import Core, RunningCore
from vivified.core.cli import _devmail, _rest_up
from vivified.core.cli._client import operator_target
from vivified.core.cli._sandbox import Sandbox, locate_bwrap
from vivified.core.cli._settings import SettingsError
from vivified.core.cli._supervisor import SandboxRefused, Supervisor, Unsandboxed, placement
from vivified.core.config import CoreConfig

_log = logging.getLogger("vivified.up")


@dataclass(frozen=True)
class PluginSpec:
    """A plugin shipped under `plugins/<name>/` with a manifest and `__main__`
    (Python) or `package.json` (Node.js), or a plugin project given with
    `--plugin DIR` (then `path` is DIR, put first on the plugin's PYTHONPATH)."""

    module: str
    """`vivified.plugins.<name>`: where it lives, and what `python -m` runs when `command` is empty."""
    manifest: Path
    path: Path | None = None
    command: tuple[str, ...] = ()
    """The argv that starts a Node.js plugin, `(node, <dir>/main.js)` (the sandbox shows it
    what `_sandbox.node_paths` finds from there); empty for a Python plugin."""

    def argv(self) -> tuple[str, ...]:
        return self.command or (sys.executable, "-m", self.module)


class PluginProjectError(ValueError):
    """A `--plugin DIR` that is not a runnable plugin project (reason in `reason`)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="also run the plugin project in DIR (repeatable): DIR/manifest.yaml is approved like the bundled "
        "plugins and `python -m MODULE` runs it with DIR first on PYTHONPATH, MODULE from "
        "[tool.vivified] module in DIR/pyproject.toml (as `vivified create-plugin` writes it); a Node.js project "
        "(DIR/package.json, no pyproject.toml) runs as `node <its main>`",
    )


def add_sandbox_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="start plugins that cannot be sandboxed (not Linux, no bubblewrap, user namespaces off) without a "
        "sandbox, with a warning; without this flag they are refused in the production profile and by run-plugin "
        "(the development profile starts them with the warning)",
    )


@dataclass(frozen=True)
class SandboxPlan:
    """How `up` runs its plugins: in `sandbox` (None: unsandboxed, for `unsandboxed.reason`)."""

    config: CoreConfig
    """The core's config, with the `plugin_socket_dir` the sandboxes use."""
    sandbox: Sandbox | None
    unsandboxed: Unsandboxed
    made_dir: Path | None = None
    """A socket dir `up` created itself (removed when it stops)."""


def plan_sandbox(config: CoreConfig, allow_unsandboxed: bool) -> SandboxPlan:
    """Sandbox every plugin when this machine can; the socket dir is the
    configured one or a new private one under the temp dir (short enough for
    socket paths)."""
    allowed = allow_unsandboxed or config.profile != "production"
    bwrap, reason = locate_bwrap()
    if reason is not None or bwrap is None:
        return SandboxPlan(config, None, Unsandboxed(reason or "no bubblewrap", allowed))
    made = None
    directory = config.plugin_socket_dir
    if directory is None:
        made = directory = Path(tempfile.mkdtemp(prefix="vivified-"))
        config = dataclasses.replace(config, plugin_socket_dir=directory)
    sandbox = Sandbox(bwrap=bwrap, data_dir=config.data_dir, socket_dir=directory)
    return SandboxPlan(config, sandbox, Unsandboxed("", allowed), made)


def check_placements(specs: Sequence[PluginSpec], plan: SandboxPlan) -> None:
    """Raise SettingsError (before anything starts) for a plugin that may not run unsandboxed."""
    for spec in specs:
        try:
            placement(spec, plan.sandbox, plan.unsandboxed)
        except SandboxRefused as refused:
            raise SettingsError(f"{refused} [PLUGIN_UNSANDBOXED]") from None


def plugin_project(directory: Path) -> PluginSpec:
    """The spec of the plugin project in `directory` (see `add_plugin_flag`)."""
    directory = directory.resolve()
    manifest = directory / "manifest.yaml"
    if not manifest.is_file():
        raise PluginProjectError(f"--plugin {directory}: no manifest.yaml there", "PLUGIN_MANIFEST_MISSING")
    if (directory / "package.json").is_file() and not (directory / "pyproject.toml").is_file():
        # A Node.js project (`vivified create-plugin --lang node`): `node <package.json main>`.
        node = node_plugin(directory, manifest)
        if node is None:
            raise PluginProjectError(
                f"--plugin {directory}: a Node.js plugin project that cannot be started (the reason is logged above; "
                "run `npm install && npm run build` there)",
                "PLUGIN_NODE_UNRUNNABLE",
            )
        return node
    try:
        with (directory / "pyproject.toml").open("rb") as handle:
            project = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PluginProjectError(
            f"--plugin {directory}: cannot read pyproject.toml: {exc}", "PLUGIN_MODULE_MISSING"
        ) from None
    module = project.get("tool", {}).get("vivified", {}).get("module")
    if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
        raise PluginProjectError(
            f'--plugin {directory}: pyproject.toml needs [tool.vivified] module = "<package>" '
            "(the module `python -m` runs)",
            "PLUGIN_MODULE_MISSING",
        )
    return PluginSpec(module=module, manifest=manifest, path=directory)


def external_plugins(directories: Sequence[Path]) -> list[PluginSpec]:
    """Specs of every `--plugin DIR`; raises `SettingsError` naming the first bad one."""
    try:
        return [plugin_project(directory) for directory in directories]
    except PluginProjectError as error:
        raise SettingsError(f"{error} [{error.reason}]") from None


def discover_plugins() -> list[PluginSpec]:
    """The bundled plugins, found on disk without importing them (the core
    never imports a plugin; each runs as `python -m vivified.plugins.<name>`,
    or, for a Node.js plugin, `node <its main>`)."""
    package = importlib.util.find_spec("vivified.plugins")
    roots = [Path(p) for p in (package.submodule_search_locations or [])] if package else []
    specs = []
    for root in roots:
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            manifest = entry / "manifest.yaml"
            if entry.is_dir() and manifest.is_file() and (entry / "__main__.py").is_file():
                specs.append(PluginSpec(module=f"vivified.plugins.{entry.name}", manifest=manifest))
            elif entry.is_dir() and manifest.is_file() and (entry / "package.json").is_file():
                node = node_plugin(entry, manifest)
                if node is not None:
                    specs.append(node)
    return specs


def node_plugin(directory: Path, manifest: Path) -> PluginSpec | None:
    """A Node.js plugin directory (`package.json` beside `manifest.yaml`) as a
    spec started with `node <package.json main>`; None, with the reason
    logged, when Node.js or the plugin's installed dependencies are missing
    (tools/setup.sh installs both and builds sdk/nodejs)."""
    name = f"vivified.plugins.{directory.name}"
    try:
        package = json.loads((directory / "package.json").read_text())
    except (OSError, ValueError) as exc:
        package = f"cannot read package.json ({exc})"
    if not isinstance(package, dict):
        _log.error("%s: %s; not started", name, package if isinstance(package, str) else "package.json is no object")
        return None
    main = directory / str(package.get("main") or "main.js")
    node = shutil.which("node")
    if node is None:
        problem = "Node.js (`node`) is not on PATH"
    elif not main.is_file():
        problem = f"its main file {main} does not exist"
    elif package.get("dependencies") and not (directory / "node_modules").is_dir():
        problem = "its dependencies are not installed (run tools/setup.sh)"
    else:
        return PluginSpec(module=name, manifest=manifest, command=(node, str(main)))
    _log.error("%s is a Node.js plugin but %s; not started", name, problem)
    return None


def grpcurl_hint(config: CoreConfig, running: RunningCore) -> str:
    operator = config.data_dir / "operator"
    return (
        f"grpcurl -cacert {operator / 'ca.crt'} -cert {operator / 'operator.crt'} "
        f"-key {operator / 'operator.key'} {running.listen_address} list"
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_core(config: CoreConfig) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    core = Core(config)
    try:
        running = await core.start()  # a failed start stops what it started
        print(f"vivified core ready: mTLS {running.listen_address}, bootstrap {running.bootstrap_address}", flush=True)
        print(f"list services: {grpcurl_hint(config, running)}", flush=True)
        await stop.wait()
    finally:
        await core.stop()
    return 0


def _report_failure(spec: PluginSpec, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("%s is not running: %s", spec.module, error)


async def run_up(
    config: CoreConfig,
    environ: Mapping[str, str],
    extra_plugins: Sequence[PluginSpec] = (),
    *,
    allow_unsandboxed: bool = False,
) -> int:
    specs = [*discover_plugins(), *extra_plugins]
    plan = plan_sandbox(config, allow_unsandboxed)
    try:
        check_placements(specs, plan)
        return await _run_up(plan, environ, specs)
    finally:
        if plan.made_dir is not None:
            shutil.rmtree(plan.made_dir, ignore_errors=True)


async def _run_up(plan: SandboxPlan, environ: Mapping[str, str], specs: Sequence[PluginSpec]) -> int:
    config = plan.config
    stop = asyncio.Event()
    install_stop_signals(stop)
    sink = None
    if config.profile == "development" and any(s.module.endswith(".email_gateway") for s in specs):
        sink, config = await _devmail.start_sink(config)
    core = Core(config)
    try:
        running = await core.start()
    except BaseException:
        if sink is not None:
            await sink.stop()
        raise
    print(
        f"vivified is up: core mTLS {running.listen_address}, bootstrap {running.bootstrap_address}, "
        f"metrics http://{running.metrics_address}/metrics",
        flush=True,
    )
    print(f"plugins: {', '.join(s.module.rsplit('.', 1)[-1] for s in specs) or '(none)'}", flush=True)
    if plan.sandbox is not None:
        print(
            f"plugins are sandboxed (bubblewrap); the core's plugin sockets are in {plan.sandbox.socket_dir}",
            flush=True,
        )
    else:
        print(f"plugins run WITHOUT a sandbox: {plan.unsandboxed.reason}", flush=True)
    print(f"list the core's services with:\n  {grpcurl_hint(config, running)}", flush=True)
    bridge = await asyncio.to_thread(_rest_up.start_bridge, config, running)
    environ = {**os.environ, **environ}
    after_approval = None
    if sink is not None:
        print(f"development SMTP sink: smtp://127.0.0.1:{sink.port}, messages in {sink.outbox}/<n>.eml", flush=True)
        target = operator_target(config.data_dir, environ, running.listen_address)
        port = sink.port

        async def after_approval(plugin_id: str) -> None:
            if plugin_id == _devmail.GATEWAY:
                await _devmail.point_gateway_at_sink(target, port)

    print("stop with Ctrl-C", flush=True)
    supervisor = Supervisor(
        config, running, environ, after_approval, sandbox=plan.sandbox, unsandboxed=plan.unsandboxed
    )
    tasks = [asyncio.create_task(supervisor.supervise(spec, stop)) for spec in specs]
    for spec, task in zip(specs, tasks, strict=True):
        task.add_done_callback(functools.partial(_report_failure, spec))
    try:
        await stop.wait()
        # The REST bridge first: nothing new comes in from outside while the plugins stop.
        await asyncio.to_thread(_rest_up.stop_bridge, bridge)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        _rest_up.stop_bridge(bridge)  # (already stopped, unless stopping the plugins failed)
        await core.stop()
        if sink is not None:
            await sink.stop()
    return 0
