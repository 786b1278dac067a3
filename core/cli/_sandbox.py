"""The sandbox each plugin process runs in (Linux, bubblewrap).

`vivified up` and `vivified run-plugin` start every plugin they can (Python
and Node.js alike) inside `bwrap` with:

- its own network namespace: no interface but a loopback of its own, so no
  TCP or UDP reaches the host, its loopback or anything beyond, and no name
  resolves; the core is reached only through its Unix sockets
  (`core/plugin_sockets.py`), mTLS still on, and the plugin serves its own
  server on `<socket-dir>/<plugin-id>/plugin.sock`, which the core dials;
- its own user namespace as uid/gid 65534 (nobody) with every capability
  dropped, and its own PID, IPC and UTS namespaces; killed with its supervisor;
- a read-only view of the host's file system, a private empty /tmp, the
  core's data dir and socket dir replaced by empty directories except the
  plugin's own data dir (writable), its own socket dir (writable), the core's
  two sockets and the CA certificate (read-only); code the plugin needs that
  lives under a hidden directory (a virtualenv in /tmp, a plugin project
  there, a Node.js install or the packages a Node.js plugin links to) is
  shown again read-only (`interpreter_paths`, `node_paths`);
- rlimits: data segment size (memory), open files and processes.

When the supervisor runs as root the sandbox's uid maps back to root outside
the namespace, without capabilities; Linux does not count processes against
root's RLIMIT_NPROC, so the process limit holds only for an unprivileged
supervisor (run `vivified up` as an ordinary user in production).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vivified.core.plugin_sockets import (
    bootstrap_socket,
    check_socket_path,
    core_socket,
    plugin_socket,
    plugin_socket_dir,
)

NOBODY = 65534
UNSANDBOXED = "PLUGIN_UNSANDBOXED"


@dataclass(frozen=True)
class SandboxLimits:
    """The rlimits of a sandboxed plugin process (inherited by what it starts)."""

    memory_bytes: int = 1 << 30
    """RLIMIT_DATA: the most heap and private writable memory it may map."""
    open_files: int = 1024
    """RLIMIT_NOFILE."""
    processes: int = 512
    """RLIMIT_NPROC (threads count): see the module docstring for root."""

    def __post_init__(self) -> None:
        if self.memory_bytes < 64 << 20 or self.open_files < 64 or self.processes < 16:
            raise ValueError("sandbox limits need memory >= 64 MiB, open files >= 64, processes >= 16")

    def prlimit_args(self, prlimit: str) -> list[str]:
        """`prlimit` setting the limits (soft = hard) on the command it runs. A tool, not a
        preexec function: Python code in a child forked from the threaded supervisor can crash."""
        return [
            prlimit,
            f"--data={self.memory_bytes}",
            f"--nofile={self.open_files}",
            f"--nproc={self.processes}",
            "--",
        ]


def unavailable_reason(bwrap: str | None = None) -> str | None:
    """Why plugins cannot be sandboxed on this machine, or None when they can
    (bubblewrap present and able to create the namespaces: it is run once)."""
    if not sys.platform.startswith("linux"):
        return f"sandboxing needs Linux (this is {sys.platform})"
    bwrap = bwrap or shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (`bwrap`, Debian package bubblewrap) is not on PATH"
    if shutil.which("prlimit") is None:
        return "prlimit (Debian package util-linux), which sets the sandbox's rlimits, is not on PATH"
    return _probe(bwrap)


def locate_bwrap() -> tuple[str | None, str | None]:
    """(bubblewrap's path, None) when plugins can be sandboxed here, else (path or None, why not)."""
    bwrap = shutil.which("bwrap")
    return bwrap, unavailable_reason(bwrap)


@functools.cache
def _probe(bwrap: str) -> str | None:
    try:
        done = subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
            + ["--ro-bind", "/", "/", "--", "/bin/true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()[:300]
        return f"bubblewrap cannot create the namespaces here (user namespaces disabled?): {detail}"
    return None


def _under(path: pathlib.Path, roots: Iterable[pathlib.Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@dataclass(frozen=True)
class Sandbox:
    """How to wrap one plugin's argv in bubblewrap (see the module docstring)."""

    bwrap: str
    data_dir: pathlib.Path
    """The core's data dir (hidden but for the plugin's own directory and the CA certificate)."""
    socket_dir: pathlib.Path
    """The core's `plugin_socket_dir`."""
    limits: SandboxLimits = SandboxLimits()

    def argv(
        self,
        plugin_id: str,
        command: Sequence[str],
        *,
        own_data: pathlib.Path,
        ca_file: pathlib.Path,
        readable: Iterable[pathlib.Path],
    ) -> list[str]:
        """`bwrap <options> -- <command>` for plugin `plugin_id`."""
        data_dir, socket_dir = self.data_dir.resolve(), self.socket_dir.resolve()
        hidden = (pathlib.Path("/tmp"), data_dir, socket_dir)
        own_sockets = plugin_socket_dir(socket_dir, plugin_id)
        check_socket_path(plugin_socket(socket_dir, plugin_id))
        args = [
            *self.limits.prlimit_args(shutil.which("prlimit") or "prlimit"),
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid", str(NOBODY),
            "--gid", str(NOBODY),
            "--cap-drop", "ALL",
            "--die-with-parent",
            "--new-session",
            "--hostname", "plugin",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
        ]  # fmt: skip
        # Code and interpreter paths under a hidden directory are shown again
        # read-only first, so the hiding of the data and socket dirs below wins
        # over any of them that contains those dirs.
        for path in sorted({p.resolve() for p in readable if p.exists()}):
            if path not in hidden and _under(path, hidden):
                args += ["--ro-bind", str(path), str(path)]
        args += ["--tmpfs", str(data_dir), "--tmpfs", str(socket_dir)]
        args += ["--ro-bind", str(ca_file.resolve()), str(ca_file.resolve())]
        args += ["--bind", str(own_data.resolve()), str(own_data.resolve())]
        args += ["--bind", str(own_sockets), str(own_sockets)]
        for sock in (core_socket(socket_dir), bootstrap_socket(socket_dir)):
            args += ["--ro-bind", str(sock), str(sock)]
        args += ["--chdir", str(own_data.resolve()), "--", *command]
        return args

    def prepare(self, plugin_id: str, own_data: pathlib.Path) -> pathlib.Path:
        """Create the plugin's data and socket directories; returns its socket path."""
        own_data.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = plugin_socket_dir(self.socket_dir.resolve(), plugin_id)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return check_socket_path(plugin_socket(self.socket_dir.resolve(), plugin_id))


def sandboxed_command_pid(bwrap_pid: int) -> int | None:
    """The pid, as the supervisor sees it, of the command a running `bwrap` started, or
    None when it has not started it (yet) or it has exited. bwrap's child is the init of
    the new PID namespace, and the command is that init's first child (processes the
    plugin orphans are re-parented to the init too, later). bwrap passes no signal on (a
    SIGTERM to it kills it, and --die-with-parent then kills the plugin), so a graceful
    stop signals the command itself."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        # The command name in parentheses may hold spaces and parentheses itself; after it
        # come state, ppid, ... and the start time (field 22, so the 20th after the name).
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append((int(fields[19]), int(entry.name)))
    inits = children.get(bwrap_pid, [])
    commands = sorted(children.get(inits[0][1], [])) if len(inits) == 1 else []
    return commands[0][1] if commands else None


def node_paths(command: Sequence[str]) -> list[pathlib.Path]:
    """What a Node.js plugin started as `node <main> ...` reads (shown read-only to it):
    Node.js's install prefix, the main file's directory, every `node_modules` Node
    searches from there (its own and each parent directory's), the real directories
    of packages linked into them (an SDK installed from a local path, `file:...`, is a
    symlink to it), and theirs in turn, and the contracts the Node.js SDK loads at run
    time (`proto/` beside it in the checkout)."""
    node, main = pathlib.Path(command[0]).resolve(), pathlib.Path(command[1]).resolve()
    paths = {node.parent.parent, main.parent}
    pending, searched = [main.parent], set()
    while pending:
        directory = pending.pop()
        for base in (directory, *directory.parents):
            modules = base / "node_modules"
            if modules in searched or not modules.is_dir():
                continue
            searched.add(modules)
            paths.add(modules)
            for package in _packages(modules):
                if package.is_symlink():
                    target = package.resolve()
                    if target.is_dir() and target not in paths:
                        paths.add(target)
                        pending.append(target)
    protos = _checkout_protos()
    if protos is not None:
        paths.add(protos)
    return sorted(paths)


def _packages(modules: pathlib.Path) -> list[pathlib.Path]:
    """The package entries of a `node_modules` directory (`name` and `@scope/name`; not `.bin` and the like)."""
    found: list[pathlib.Path] = []
    for entry in modules.iterdir():
        if entry.name.startswith("@") and entry.is_dir() and not entry.is_symlink():
            found.extend(entry.iterdir())
        elif not entry.name.startswith("."):
            found.append(entry)
    return found


def _checkout_protos() -> pathlib.Path | None:
    core = importlib.util.find_spec("vivified.core")
    for location in (core.submodule_search_locations or []) if core is not None else []:
        protos = pathlib.Path(location).parent / "proto"
        if protos.is_dir():
            return protos.resolve()
    return None


def interpreter_paths() -> list[pathlib.Path]:
    """Where this Python and its packages live (shown read-only to a Python plugin)."""
    paths = {pathlib.Path(sys.prefix), pathlib.Path(sys.base_prefix), pathlib.Path(sys.executable).resolve().parent}
    paths.update(pathlib.Path(p) for p in sys.path if p)
    paths.update(pathlib.Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    return sorted(paths)
