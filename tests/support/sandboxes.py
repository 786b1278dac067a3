"""What /proc says about a plugin process from outside its sandbox: its
descendants and ancestry (the supervisor's child is `prlimit`, which execs
`bwrap`, whose PID-namespace child runs the plugin), its rlimits and its
network namespace."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

_PROC = pathlib.Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    @property
    def program(self) -> str:
        """The executable's file name (`node`, `bwrap`), from argv[0]."""
        return pathlib.PurePath(self.argv[0]).name if self.argv else ""


def process(pid: int) -> ProcessInfo | None:
    """`pid`'s parent and argv, None when it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may itself hold spaces and parentheses.
    ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return ProcessInfo(pid, ppid, tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a))


def descendants(pid: int) -> list[ProcessInfo]:
    """Every living process below `pid`."""
    infos = [info for entry in _PROC.iterdir() if entry.name.isdigit() and (info := process(int(entry.name)))]
    children: dict[int, list[ProcessInfo]] = {}
    for info in infos:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child.pid)
    return found


def ancestry(pid: int, stop: int) -> list[ProcessInfo]:
    """`pid`'s parents up to (not including) `stop`, nearest first; [] when `stop` is no ancestor."""
    chain: list[ProcessInfo] = []
    current = process(pid)
    while current is not None:
        if current.ppid == stop:
            return chain
        if current.ppid == 0:
            return []
        current = process(current.ppid)
        if current is not None:
            chain.append(current)
    return []


def limits(pid: int) -> dict[str, tuple[str, str]]:
    """`/proc/<pid>/limits`: limit name -> (soft, hard), as printed."""
    lines = (_PROC / str(pid) / "limits").read_text().splitlines()[1:]
    table = {}
    for line in lines:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        table[name] = (soft, hard)
    return table


def net_namespace(pid: int | str = "self") -> str:
    return os.readlink(_PROC / str(pid) / "ns" / "net")
