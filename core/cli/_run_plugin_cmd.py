"""`vivified run-plugin`: run one plugin sandboxed and supervised beside a
running core, for operators who deploy without containers.

It does for one plugin what `vivified up` does for each: approves it as the
operator (the operator credentials of the core's data dir), starts it inside
bubblewrap (`_sandbox`), restarts it with backoff after a crash, stops and
alerts on a crash loop or an artifact that no longer matches its approval,
and prefixes its output with its id. The core must have been started with
`--plugin-socket-dir` (the plugin reaches it only over those sockets); a
plugin that cannot be sandboxed is refused unless `--allow-unsandboxed` is
given. Stop it with SIGTERM or Ctrl-C (the plugin is stopped too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

from vivified.core.app import RunningCore
from vivified.core.cli._sandbox import Sandbox, locate_bwrap
from vivified.core.cli._settings import SettingsError
from vivified.core.cli._supervisor import Supervisor, Unsandboxed
from vivified.core.cli._up import (
    PluginProjectError,
    PluginSpec,
    SandboxPlan,
    add_sandbox_flag,
    check_placements,
    discover_plugins,
    install_stop_signals,
    plugin_project,
)
from vivified.core.config import CoreConfig
from vivified.core.data_dir import run_file
from vivified.core.settings import DEFAULT_DATA_DIR


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "run one plugin sandboxed and supervised beside a running core (no containers needed)"
    cmd = sub.add_parser(
        "run-plugin",
        help=text,
        description=f"{text}. The core must run with --plugin-socket-dir on this host; the plugin is approved "
        "with the operator credentials in the core's data dir and started inside bubblewrap, restarted after "
        "a crash and stopped on a crash loop. Stop with SIGTERM or Ctrl-C.",
    )
    cmd.add_argument(
        "plugin",
        metavar="PLUGIN",
        help="a bundled plugin's name (e.g. email-gateway) or a plugin project directory (as `vivified "
        "create-plugin` writes it)",
    )
    cmd.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="the running core's data dir (its run/core.json says where it listens; default ./.vivified)",
    )
    add_sandbox_flag(cmd)


def plugin_spec(name: str) -> PluginSpec:
    """A bundled plugin by name (`email-gateway` or `email_gateway`), else a project directory."""
    directory = Path(name)
    if directory.is_dir():
        try:
            return plugin_project(directory)
        except PluginProjectError as error:
            raise SettingsError(f"{error} [{error.reason}]") from None
    bundled = {spec.module.rsplit(".", 1)[-1]: spec for spec in discover_plugins()}
    found = bundled.get(name.replace("-", "_"))
    if found is None:
        known = ", ".join(sorted(n.replace("_", "-") for n in bundled)) or "(none)"
        raise SettingsError(f"{name!r} is neither a plugin project directory nor a bundled plugin ({known})")
    return found


def running_core(data_dir: Path) -> RunningCore:
    path = run_file(data_dir)
    try:
        info = json.loads(path.read_text())
        return RunningCore(**info)
    except FileNotFoundError:
        raise SettingsError(f"no core is running with data dir {data_dir} (no {path}); start `vivified core`") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from None


def plan(running: RunningCore, data_dir: Path, allow_unsandboxed: bool) -> SandboxPlan:
    config = CoreConfig(data_dir=data_dir)
    if not running.plugin_socket_dir:
        no_sockets = "the core serves no plugin sockets (start it with --plugin-socket-dir DIR)"
        return SandboxPlan(config, None, Unsandboxed(no_sockets, allow_unsandboxed))
    bwrap, reason = locate_bwrap()
    if bwrap is None or reason is not None:
        return SandboxPlan(config, None, Unsandboxed(reason or "no bubblewrap", allow_unsandboxed))
    sandbox = Sandbox(bwrap=bwrap, data_dir=data_dir, socket_dir=Path(running.plugin_socket_dir))
    return SandboxPlan(config, sandbox, Unsandboxed("", allow_unsandboxed))


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    spec = plugin_spec(args.plugin)
    data_dir = Path(args.data_dir)
    running = running_core(data_dir)
    chosen = plan(running, data_dir, args.allow_unsandboxed)
    check_placements([spec], chosen)
    return asyncio.run(_supervise(spec, running, chosen, environ))


async def _supervise(spec: PluginSpec, running: RunningCore, chosen: SandboxPlan, environ: Mapping[str, str]) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    supervisor = Supervisor(chosen.config, running, environ, sandbox=chosen.sandbox, unsandboxed=chosen.unsandboxed)
    state = "sandboxed" if chosen.sandbox is not None else f"WITHOUT a sandbox ({chosen.unsandboxed.reason})"
    print(f"running {spec.module} {state} beside the core at {running.listen_address}; stop with Ctrl-C", flush=True)
    await supervisor.supervise(spec, stop)
    return 0
