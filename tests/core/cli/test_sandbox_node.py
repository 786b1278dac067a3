"""What the sandbox shows a Node.js plugin (`node_paths`), and how the supervisor
finds the plugin's own process inside a running bwrap to stop it gracefully
(`sandboxed_command_pid`), against a real bwrap."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import time

import pytest

from vivified.core.cli._proto_path_cmd import proto_path
from vivified.core.cli._sandbox import NOBODY, Sandbox, node_paths, sandboxed_command_pid, unavailable_reason
from vivified.core.cli._supervisor import Unsandboxed, placement
from vivified.core.cli._up import PluginSpec

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_node_paths_follow_node_modules_up_the_tree_and_into_linked_packages(tmp_path: pathlib.Path) -> None:
    # plugin/node_modules/@vivified/sdk -> sdk (linked like npm's file: dependency), whose own
    # node_modules links gen; the project's parent has a node_modules too; .bin entries are not packages.
    plugin, sdk, gen, elsewhere = (tmp_path / n for n in ("work/plugin", "sdk", "gen", "elsewhere"))
    for directory in (plugin / "node_modules/@vivified", sdk / "node_modules/@vivified", gen, elsewhere):
        directory.mkdir(parents=True)
    (tmp_path / "work/node_modules").mkdir()
    (plugin / "main.js").write_text("")
    (plugin / "node_modules/@vivified/sdk").symlink_to(sdk)
    (plugin / "node_modules/.bin").mkdir()
    (plugin / "node_modules/.bin/tool").symlink_to(elsewhere)
    (sdk / "node_modules/@vivified/gen").symlink_to(gen)
    paths = node_paths(["/usr/bin/node", str(plugin / "main.js")])
    for expected in (
        plugin,
        plugin / "node_modules",
        tmp_path / "work/node_modules",
        sdk,
        sdk / "node_modules",
        gen,
        pathlib.Path("/usr/bin/node").resolve().parent.parent,
        proto_path(),  # the Node.js SDK loads the contracts at run time
    ):
        assert expected.resolve() in paths, (expected, paths)
    assert elsewhere.resolve() not in paths


def test_placement_sandboxes_node_plugins_like_python_ones(tmp_path: pathlib.Path) -> None:
    node = PluginSpec(module="vivified.plugins.n", manifest=tmp_path / "manifest.yaml", command=("node", "main.js"))
    sandbox = Sandbox(bwrap="bwrap", data_dir=tmp_path / "data", socket_dir=tmp_path / "sockets")
    assert placement(node, sandbox, Unsandboxed("", allowed=False)) == (sandbox, "")


@pytest.mark.skipif(unavailable_reason() is not None, reason="needs bubblewrap (tools/setup.sh installs it)")
def test_the_command_inside_bwrap_is_found_not_its_orphans() -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    # The command orphans a sleeper (re-parented to bwrap's init) before it becomes `sleep 61`.
    script = "(sleep 60 &); sleep 0.2; exec sleep 61"
    args = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    args += ["--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "sh", "-c", script]
    process = subprocess.Popen(args)
    try:

        def command() -> str:
            pid = sandboxed_command_pid(process.pid)
            return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode() if pid else ""

        deadline = time.monotonic() + 10
        while command() != "sleep\x0061\x00" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert command() == "sleep\x0061\x00"
        assert sandboxed_command_pid(process.pid) != process.pid
    finally:
        process.kill()
        process.wait(10)
    assert sandboxed_command_pid(process.pid) is None
