"""Sandboxed plugins (core/cli/_sandbox.py) against a real core process that
also serves its ports as Unix sockets: the supervisor of `vivified up` starts
a real SDK plugin inside bubblewrap; the plugin probes its sandbox from inside
and writes what it saw to its own data dir; its egress fetch goes through the
core's Unix socket to an HTTP server on the host's loopback (S1, S2).

The probes: a TCP connection to a listener on the host's loopback, to the
host's non-loopback address and to the core's TCP port; a connect to another
plugin's socket; a name lookup; reading the core's data dir (CA key, the
database, the token key) and another plugin's data dir; writing outside its own
data dir. Then the same plugin runs unsandboxed, where the loopback probe
connects, so the probe itself is shown able to succeed. A Node.js plugin on the
Node.js SDK (its project under the temp dir, the SDK linked in as `npm` links
a `file:` dependency) runs the same probes in the same sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
import pytest_asyncio

from support.clients import (
    approve,
    audit_rows,
    bootstrap_channel,
    error_info,
    manifest_message,
    new_csr,
    operator_channel,
)
from support.lane import write_manifest
from support.processes import CoreProcess, clean_env, core_running
from support.waiting import until
from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.admin.v1 import plugin_admin_pb2_grpc as admin_grpc
from vivified.core.app import RunningCore
from vivified.core.cli._sandbox import Sandbox, SandboxLimits, unavailable_reason
from vivified.core.cli._supervisor import SandboxRefused, SupervisionConfig, Supervisor, Unsandboxed
from vivified.core.cli._up import plugin_project
from vivified.core.config import CoreConfig
from vivified.registry.v1 import registry_pb2 as reg_pb
from vivified.registry.v1 import registry_pb2_grpc as reg_grpc

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]
TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
FETCH = "/vivified.egress.v1.EgressProxyService/Fetch"
APPROVE = "/vivified.admin.v1.PluginAdminService/ApprovePlugin"
REGISTER = "/vivified.registry.v1.PluginRegistryService/Register"
BWRAP = shutil.which("bwrap")
if unavailable_reason() is not None:  # tools/setup.sh installs bubblewrap
    pytest.fail(f"bubblewrap must work here for these tests: {unavailable_reason()}", pytrace=False)

# Runs the probes once the core's Init arrived (egress needs a registered plugin),
# writes probes.json into its own data dir, then keeps serving.
PLUGIN_MAIN = textwrap.dedent("""
    import asyncio, json, os, resource, socket, sys
    from vivified.sdk import PluginSettings, run
    from vivified.egress.v1 import egress_pb2
    from support.lane import RecordingStore

    targets = json.loads(os.environ["PROBE_TARGETS"])
    data = os.environ["VIVIFIED_PLUGIN_DATA_DIR"]
    os.makedirs(data, exist_ok=True)

    def attempt(action):
        try:
            action()
            return "ok"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def tcp(host, port):
        def go():
            with socket.create_connection((host, port), timeout=3):
                pass
        return attempt(go)

    def unix(path):
        def go():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(path)
        return attempt(go)

    def read(path):
        return attempt(lambda: open(path, "rb").read(1))

    def write(path):
        def go():
            with open(path, "w") as f:
                f.write("x")
        return attempt(go)

    class Probe(RecordingStore):
        async def on_init(self, runtime):
            asyncio.get_running_loop().create_task(self.probe(runtime))

        async def probe(self, runtime):
            result = {
                "loopback": tcp("127.0.0.1", targets["loopback_port"]),
                "host_address": tcp(targets["host_address"], targets["loopback_port"]),
                "core_tcp": tcp("127.0.0.1", targets["core_port"]),
                "other_plugin_socket": unix(targets["other_socket"]),
                "resolve": attempt(lambda: socket.getaddrinfo("pypi.org", 443)),
                "read_core_files": {p: read(p) for p in targets["core_files"]},
                "read_other_plugin": read(targets["other_plugin_file"]),
                "write_outside": write(targets["outside_file"]),
                "write_tmp_is_private": write(targets["tmp_file"]),
                "write_own": write(os.path.join(data, "own.txt")),
                "uid": os.getuid(),
                "rlimits": [resource.getrlimit(getattr(resource, n)) for n in ("RLIMIT_DATA", "RLIMIT_NOFILE", "RLIMIT_NPROC")],
            }
            try:
                reply = await runtime.fetch(egress_pb2.FetchRequest(method="GET", url=targets["fetch_url"]), timeout=20)
                result["fetch"] = f"{reply.status_code} {reply.body.decode()}"
            except Exception as exc:
                result["fetch"] = f"{type(exc).__name__}: {exc}"
            tmp = os.path.join(data, "probes.json.tmp")
            with open(tmp, "w") as f:
                json.dump(result, f)
            os.replace(tmp, os.path.join(data, "probes.json"))

    run([Probe()], PluginSettings.from_env(os.environ))
""")


# The same probes in Node.js, on the Node.js SDK: run once Init arrived, written to
# probes.json in its own data dir; "ok" or "<error code>: <message>".
NODE_PROBE_MAIN = textwrap.dedent("""
    import { lookup } from "node:dns/promises";
    import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
    import { connect } from "node:net";
    import { join } from "node:path";
    import { PluginRuntime, settingsFromEnv } from "@vivified/sdk";

    const targets = JSON.parse(process.env.PROBE_TARGETS);
    const data = process.env.VIVIFIED_PLUGIN_DATA_DIR;
    mkdirSync(data, { recursive: true });  // the supervisor makes it only for a sandbox
    const attempt = async (action) => {
      try {
        await action();
        return "ok";
      } catch (error) {
        return `${error.code ?? error.name}: ${error.message}`;
      }
    };
    const dial = (options) => attempt(() => new Promise((resolve, reject) => {
      const socket = connect(options);
      socket.setTimeout(3000, () => socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
      socket.once("connect", () => { socket.destroy(); resolve(); });
      socket.once("error", reject);
    }));
    const read = (path) => attempt(() => readFileSync(path));
    const write = (path) => attempt(() => writeFileSync(path, "x"));

    async function probe(runtime) {
      const coreFiles = {};
      for (const path of targets.core_files) coreFiles[path] = await read(path);
      const result = {
        loopback: await dial({ host: "127.0.0.1", port: targets.loopback_port }),
        host_address: await dial({ host: targets.host_address, port: targets.loopback_port }),
        core_tcp: await dial({ host: "127.0.0.1", port: targets.core_port }),
        other_plugin_socket: await dial({ path: targets.other_socket }),
        resolve: await attempt(() => lookup("pypi.org")),
        read_core_files: coreFiles,
        read_other_plugin: await read(targets.other_plugin_file),
        write_outside: await write(targets.outside_file),
        write_tmp_is_private: await write(targets.tmp_file),
        write_own: await write(join(data, "own.txt")),
        uid: process.getuid(),
        limits: readFileSync("/proc/self/limits", "utf8"),
      };
      try {
        const reply = await runtime.fetch({ method: "GET", url: targets.fetch_url, timeoutSeconds: 20 });
        result.fetch = `${reply.status_code} ${Buffer.from(reply.body).toString()}`;
      } catch (error) {
        result.fetch = `${error.name}: ${error.message}`;
      }
      writeFileSync(join(data, "probes.json.tmp"), JSON.stringify(result));
      renameSync(join(data, "probes.json.tmp"), join(data, "probes.json"));
    }

    const contract = {
      service: "vivified.communication.v1.CommunicationPluginService",
      handlers: {
        SendMessage: (request) => ({ message_id: request.message.message_id, status: "DELIVERY_STATUS_DELIVERED" }),
        GetMessageStatus: (request) => ({ message_id: request.message_id, status: "DELIVERY_STATUS_DELIVERED" }),
      },
    };
    const runtime = new PluginRuntime([contract], settingsFromEnv(process.env), {
      onInit: () => void setImmediate(() => void probe(runtime)),
    });
    process.on("SIGTERM", () => void runtime.stop("SIGTERM"));
    await runtime.start();
    await runtime.waitClosed();
    process.exit(0);
""")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@dataclass
class World:
    core: CoreProcess
    sockets: pathlib.Path
    running: RunningCore
    tmp: pathlib.Path
    http_port: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, http_server: int) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("sandbox")
    egress = tmp / "egress.json"
    egress.write_text(json.dumps({"allow_ranges": ["127.0.0.1/32"], "resolve": {"fetch.example.com": ["127.0.0.1"]}}))
    # A short directory: a socket path must fit in 107 bytes.
    sockets = pathlib.Path(tempfile.mkdtemp(prefix="vv-"))
    try:
        with core_running(
            tmp / "data",
            "--heartbeat-interval",
            "1",
            "--leaf-ttl",
            "600",
            "--plugin-socket-dir",
            str(sockets),
            "--egress-config",
            str(egress),
        ) as core:
            info = json.loads((core.data_dir / "run" / "core.json").read_text())
            # Another plugin's socket, listening, for the sandboxed plugin to try.
            (sockets / "other-plugin").mkdir()
            with socket.socket(socket.AF_UNIX) as other:
                other.bind(str(sockets / "other-plugin" / "plugin.sock"))
                other.listen()
                yield World(core, sockets, RunningCore(**info), tmp, http_server)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def project(world: World, plugin_id: str) -> pathlib.Path:
    directory = world.tmp / plugin_id
    package = directory / "probe_plugin"
    package.mkdir(parents=True)
    write_manifest(
        directory,
        plugin_id,
        traits=["storage_plugin", "external_service"],
        security={"allowed_domains": ["fetch.example.com"], "allowed_ports": [world.http_port]},
    ).rename(directory / "manifest.yaml")
    (directory / "pyproject.toml").write_text('[tool.vivified]\nmodule = "probe_plugin"\n')
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PLUGIN_MAIN)
    return directory


def node_project(world: World, plugin_id: str) -> pathlib.Path:
    """A Node.js plugin project on the Node.js SDK, linked in as `npm install` links `file:../sdk/nodejs`."""
    directory = world.tmp / plugin_id
    (directory / "node_modules" / "@vivified").mkdir(parents=True)
    write_manifest(
        directory,
        plugin_id,
        contracts=["vivified.communication.v1.CommunicationPluginService"],
        traits=["communication_plugin", "external_service"],
        security={"allowed_domains": ["fetch.example.com"], "allowed_ports": [world.http_port]},
    ).rename(directory / "manifest.yaml")
    package = {"name": plugin_id, "type": "module", "main": "main.js", "dependencies": {"@vivified/sdk": "*"}}
    (directory / "package.json").write_text(json.dumps(package))
    (directory / "main.js").write_text(NODE_PROBE_MAIN)
    (directory / "node_modules" / "@vivified" / "sdk").symlink_to(REPO / "sdk" / "nodejs")
    return directory


def host_address() -> str:
    """A non-loopback address of this host (the one a default route would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.2"


@dataclass
class Probed:
    probes: dict[str, object]
    plugin: admin_pb.Plugin
    """The registry's view of it once it had probed."""


async def probe_run(
    world: World, plugin_id: str, sandbox: Sandbox | None, make: Callable[[World, str], pathlib.Path] | None = None
) -> Probed:
    """Supervise the probe plugin (Python, or what `make` writes) until it has written probes.json and is healthy."""
    data = world.core.data_dir
    other = data / "plugins" / "other-plugin"
    other.mkdir(parents=True, exist_ok=True)
    (other / "secret.txt").write_text("another plugin's state")
    other_socket = world.sockets / "other-plugin" / "plugin.sock"
    listener_tcp = socket.socket()
    listener_tcp.bind(("0.0.0.0", 0))
    listener_tcp.listen()
    targets = {
        "loopback_port": listener_tcp.getsockname()[1],
        "host_address": host_address(),
        "core_port": int(world.running.listen_address.rpartition(":")[2]),
        "other_socket": str(other_socket),
        "core_files": [str(p) for p in sorted(data.rglob("*")) if p.is_file() and "plugins" not in p.parts][:50],
        "other_plugin_file": str(other / "secret.txt"),
        # Its own project dir: shown to it read-only.
        "outside_file": str(world.tmp / plugin_id / "escaped.txt"),
        "tmp_file": f"/tmp/{plugin_id}-private",
        "fetch_url": f"http://fetch.example.com:{world.http_port}/hello",
    }
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")},
        "PYTHONPATH": str(TESTS),
        "PROBE_TARGETS": json.dumps(targets),
    }
    supervisor = Supervisor(
        CoreConfig(data_dir=data),
        world.running,
        environ,
        supervision=SupervisionConfig(backoff_base=0.05, backoff_max=0.2, crash_loop_crashes=2),
        output=lambda *line: None,
        sandbox=sandbox,
        unsandboxed=Unsandboxed(reason="the test runs it unsandboxed", allowed=True),
    )
    result = data / "plugins" / plugin_id / "probes.json"
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.supervise(plugin_project((make or project)(world, plugin_id)), stop))
    try:
        await until(lambda: result.exists() or task.done(), 60, f"{plugin_id}'s probes")
        assert result.exists(), f"the plugin stopped before probing: {task}"

        async def healthy() -> admin_pb.Plugin | None:
            async with operator_channel(world.core) as channel:
                reply = await admin_grpc.PluginAdminServiceStub(channel).ListPlugins(
                    admin_pb.ListPluginsRequest(), timeout=10
                )
            [plugin] = [p for p in reply.plugins if p.plugin_id == plugin_id]
            return plugin if plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY else None

        plugin = await until(healthy, 30, f"{plugin_id} healthy")
        return Probed(dict(json.loads(result.read_text())), plugin)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        listener_tcp.close()


def sandbox_of(world: World) -> Sandbox:
    assert BWRAP is not None
    return Sandbox(bwrap=BWRAP, data_dir=world.core.data_dir, socket_dir=world.sockets)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandboxed_run(world: World) -> Probed:
    return await probe_run(world, "sandboxed-probe", sandbox_of(world))


async def test_s1_sandboxed_plugin_reaches_no_network_but_its_egress_fetch_works(
    world: World, sandboxed_run: Probed
) -> None:
    sandboxed = sandboxed_run.probes
    for probe in ("loopback", "host_address", "core_tcp"):
        assert str(sandboxed[probe]).startswith(("ConnectionRefusedError", "OSError", "TimeoutError")), (
            probe,
            sandboxed[probe],
        )
        assert sandboxed[probe] != "ok"
    # Another plugin's socket is not even there (its socket dir is hidden).
    assert str(sandboxed["other_plugin_socket"]).startswith("FileNotFoundError"), sandboxed
    assert str(sandboxed["resolve"]).startswith("gaierror"), sandboxed
    # The egress lane through the core's Unix socket still works, audited as the plugin.
    assert sandboxed["fetch"] == "200 hello from the host", sandboxed
    rows = audit_rows(world.core, actor="plugin:sandboxed-probe", action=FETCH)
    assert [(r.decision, r.outcome) for r in rows] == [("allow", "OK")]
    assert sandboxed["uid"] == 65534
    limits = SandboxLimits()
    assert sandboxed["rlimits"] == [[limits.memory_bytes] * 2, [limits.open_files] * 2, [limits.processes] * 2]


async def test_s2_sandboxed_plugin_reads_no_core_or_other_plugin_data_and_writes_only_its_own(
    world: World, sandboxed_run: Probed
) -> None:
    sandboxed = sandboxed_run.probes
    core_files = sandboxed["read_core_files"]
    assert isinstance(core_files, dict)
    names = {pathlib.Path(p).name for p in core_files}
    # The CA key, the token signing key and the database are among them ...
    assert "vivified.db" in names and any("key" in n for n in names), names
    # ... and none is readable: the data dir is an empty directory in the sandbox,
    # but for the CA certificate the plugin needs (public, and read-only).
    ca = str(world.core.data_dir / "operator" / "ca.crt")
    assert core_files.pop(ca) == "ok"
    assert len(core_files) > 5 and all(str(v).startswith("FileNotFoundError") for v in core_files.values()), core_files
    assert str(sandboxed["read_other_plugin"]).startswith("FileNotFoundError"), sandboxed
    assert str(sandboxed["write_outside"]).startswith("OSError: [Errno 30]"), sandboxed  # read-only file system
    assert not (world.tmp / "sandboxed-probe" / "escaped.txt").exists()
    assert sandboxed["write_tmp_is_private"] == "ok" and not pathlib.Path("/tmp/sandboxed-probe-private").exists()
    assert sandboxed["write_own"] == "ok"
    assert (world.core.data_dir / "plugins" / "sandboxed-probe" / "own.txt").read_text() == "x"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node_sandboxed_run(world: World) -> Probed:
    return await probe_run(world, "node-probe", sandbox_of(world), node_project)


def proc_limits(text: str) -> dict[str, list[str]]:
    """/proc/<pid>/limits as read inside the sandbox: name -> [soft, hard]."""
    return {line[:26].strip(): line[26:].split()[:2] for line in text.splitlines()[1:]}


async def test_s1_sandboxed_node_plugin_reaches_no_network_but_its_egress_fetch_works(
    world: World, node_sandboxed_run: Probed
) -> None:
    probes = node_sandboxed_run.probes
    for probe in ("loopback", "host_address", "core_tcp"):
        assert str(probes[probe]).startswith(("ECONNREFUSED", "ENETUNREACH", "ETIMEDOUT")), (probe, probes[probe])
    assert str(probes["other_plugin_socket"]).startswith("ENOENT"), probes
    assert str(probes["resolve"]).startswith(("EAI_AGAIN", "ENOTFOUND")), probes
    # Its egress fetch went over the core's Unix socket, audited as the plugin.
    assert probes["fetch"] == "200 hello from the host", probes
    rows = audit_rows(world.core, actor="plugin:node-probe", action=FETCH)
    assert [(r.decision, r.outcome) for r in rows] == [("allow", "OK")]
    assert probes["uid"] == 65534
    limits, table = SandboxLimits(), proc_limits(str(probes["limits"]))
    assert table["Max data size"] == [str(limits.memory_bytes)] * 2, table
    assert table["Max open files"] == [str(limits.open_files)] * 2, table
    assert table["Max processes"] == [str(limits.processes)] * 2, table


async def test_s2_sandboxed_node_plugin_reads_no_core_or_other_plugin_data_and_writes_only_its_own(
    world: World, node_sandboxed_run: Probed
) -> None:
    probes = node_sandboxed_run.probes
    core_files = probes["read_core_files"]
    assert isinstance(core_files, dict)
    assert core_files.pop(str(world.core.data_dir / "operator" / "ca.crt")) == "ok"
    assert len(core_files) > 5 and all(str(v).startswith("ENOENT") for v in core_files.values()), core_files
    assert str(probes["read_other_plugin"]).startswith("ENOENT"), probes
    assert str(probes["write_outside"]).startswith("EROFS"), probes
    assert not (world.tmp / "node-probe" / "escaped.txt").exists()
    assert probes["write_tmp_is_private"] == "ok" and not pathlib.Path("/tmp/node-probe-private").exists()
    assert probes["write_own"] == "ok"
    assert (world.core.data_dir / "plugins" / "node-probe" / "own.txt").read_text() == "x"


async def test_sandboxed_node_plugin_serves_on_its_unix_socket_and_the_core_reaches_it(
    world: World, node_sandboxed_run: Probed
) -> None:
    assert node_sandboxed_run.plugin.endpoint == f"unix:{world.sockets.resolve()}/node-probe/plugin.sock"
    assert node_sandboxed_run.plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY


async def test_s1_the_node_probes_succeed_without_the_sandbox(world: World) -> None:
    """The Node.js probes can succeed: unsandboxed, it reaches the loopback listener and the core's files."""
    plain = (await probe_run(world, "plain-node-probe", None, node_project)).probes
    pathlib.Path("/tmp/plain-node-probe-private").unlink(missing_ok=True)
    assert plain["loopback"] == "ok" and plain["core_tcp"] == "ok" and plain["other_plugin_socket"] == "ok", plain
    core_files = plain["read_core_files"]
    assert isinstance(core_files, dict) and all(v == "ok" for v in core_files.values()), core_files
    assert plain["read_other_plugin"] == "ok" and plain["write_outside"] == "ok", plain
    assert plain["fetch"] == "200 hello from the host"


async def test_s1_the_probes_succeed_without_the_sandbox(world: World) -> None:
    """The same plugin unsandboxed: the loopback listener and the core's files
    are reachable, so the sandboxed failures above come from the sandbox."""
    plain = (await probe_run(world, "plain-probe", None)).probes
    pathlib.Path("/tmp/plain-probe-private").unlink(missing_ok=True)
    assert plain["loopback"] == "ok" and plain["core_tcp"] == "ok" and plain["other_plugin_socket"] == "ok", plain
    core_files = plain["read_core_files"]
    assert isinstance(core_files, dict) and all(v == "ok" for v in core_files.values()), core_files
    assert plain["read_other_plugin"] == "ok" and plain["write_outside"] == "ok", plain
    assert plain["fetch"] == "200 hello from the host"


async def test_sandboxed_plugin_serves_on_its_unix_socket_and_the_core_reaches_it(
    sandboxed_run: Probed, world: World
) -> None:
    # Its registered endpoint is its own socket, and the core's health checks over it made it healthy.
    assert sandboxed_run.plugin.endpoint == f"unix:{world.sockets.resolve()}/sandboxed-probe/plugin.sock"
    assert sandboxed_run.plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY


async def test_production_refuses_an_unsandboxed_plugin_unless_allowed(world: World) -> None:
    supervisor = Supervisor(
        CoreConfig(data_dir=world.core.data_dir),
        world.running,
        dict(os.environ),
        unsandboxed=Unsandboxed(reason="bubblewrap is not on PATH", allowed=False),
    )
    with pytest.raises(SandboxRefused, match="bubblewrap is not on PATH.*--allow-unsandboxed"):
        await supervisor.supervise(plugin_project(project(world, "refused-probe")), asyncio.Event())


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
        check=False,
    )


async def test_run_plugin_runs_a_project_sandboxed_beside_a_running_core(world: World) -> None:
    """`vivified run-plugin DIR --data-dir D`: approved, sandboxed, supervised; SIGTERM stops it with exit 0."""
    plugin_id = "run-plugin-probe"
    directory = project(world, plugin_id)
    data = world.core.data_dir
    targets = {
        "loopback_port": 9,
        "host_address": "127.0.0.1",
        "core_port": int(world.running.listen_address.rpartition(":")[2]),
        "other_socket": str(world.sockets / "other-plugin" / "plugin.sock"),
        "core_files": [str(data / "vivified.db")],
        "other_plugin_file": str(data / "plugins" / "other-plugin" / "secret.txt"),
        "outside_file": str(directory / "escaped.txt"),
        "tmp_file": f"/tmp/{plugin_id}-private",
        "fetch_url": f"http://fetch.example.com:{world.http_port}/hello",
    }
    env = clean_env(PYTHONPATH=str(TESTS), PROBE_TARGETS=json.dumps(targets))
    log = world.tmp / "run-plugin.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vivified.core.cli", "run-plugin", str(directory), "--data-dir", str(data)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        result = data / "plugins" / plugin_id / "probes.json"
        await until(lambda: result.exists() or process.poll() is not None, 60, f"{plugin_id}'s probes")
        assert result.exists(), log.read_text()
        probes = json.loads(result.read_text())
        assert probes["core_tcp"] != "ok" and probes["read_core_files"][str(data / "vivified.db")] != "ok", probes
        assert probes["fetch"] == "200 hello from the host", probes
        assert probes["uid"] == 65534
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    text = log.read_text()
    assert code == 0, text
    assert f"running probe_plugin sandboxed beside the core at {world.running.listen_address}" in text
    # Approved by run-plugin as the operator, recording the artifact's sha256.
    [approval] = audit_rows(world.core, action=APPROVE, resource=f"plugin/{plugin_id}")
    assert approval.actor == "operator:admin" and approval.outcome == "OK"


async def test_run_plugin_refuses_to_run_unsandboxed_without_the_flag(tmp_path: pathlib.Path) -> None:
    """A core without plugin sockets: run-plugin refuses before starting anything."""
    data = tmp_path / "data"
    (data / "run").mkdir(parents=True)
    running = RunningCore(
        pid=os.getpid(),
        listen_address="127.0.0.1:1",
        bootstrap_address="127.0.0.1:2",
        metrics_address="127.0.0.1:3",
        trust_domain="vivified.local",
    )
    (data / "run" / "core.json").write_text(json.dumps(running.__dict__))
    done = cli("run-plugin", "email-gateway", "--data-dir", str(data))
    assert done.returncode == 1
    assert "would run without a sandbox (the core serves no plugin sockets" in done.stderr
    assert "[PLUGIN_UNSANDBOXED]" in done.stderr
    assert not (data / "plugins").exists()
    missing = cli("run-plugin", "no-such-plugin", "--data-dir", str(data))
    assert missing.returncode == 1 and "neither a plugin project directory nor a bundled plugin" in missing.stderr


async def test_up_in_production_refuses_plugins_it_cannot_sandbox(tmp_path: pathlib.Path) -> None:
    """No bubblewrap on PATH: `up --profile production` refuses before the core starts;
    the development profile would start them with a warning."""
    done = cli(
        "up", "--profile", "production", "--data-dir", str(tmp_path / "data"), env=clean_env(PATH="/nonexistent")
    )
    assert done.returncode == 1, done.stderr
    assert "would run without a sandbox (bubblewrap (`bwrap`, Debian package bubblewrap) is not on PATH)" in done.stderr
    assert "--allow-unsandboxed" in done.stderr and "[PLUGIN_UNSANDBOXED]" in done.stderr
    assert not (tmp_path / "data").exists()


async def test_registry_refuses_a_unix_endpoint_other_than_the_plugins_own_socket(world: World) -> None:
    """A plugin cannot send the core's dials to another socket: only DIR/<its id>/plugin.sock
    is accepted, refused INVALID_ARGUMENT INVALID_REQUEST with one audit record, and not registered."""
    manifest = manifest_message("socket-thief")
    approval = await approve(world.core, manifest)
    other = f"unix:{world.sockets.resolve()}/other-plugin/plugin.sock"
    async with bootstrap_channel(world.core) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reg_grpc.PluginRegistryServiceStub(channel).Register(
                reg_pb.RegisterRequest(
                    manifest=manifest, csr_pem=new_csr()[0].decode(), join_token=approval.join_token, endpoint=other
                ),
                timeout=10,
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_REQUEST"
    assert "socket-thief/plugin.sock" in (caught.value.details() or "")
    rows = audit_rows(world.core, action=REGISTER, resource="plugin/socket-thief")
    assert [(r.decision, r.outcome) for r in rows] == [("allow", "INVALID_ARGUMENT")], [
        (r.decision, r.outcome, r.reason) for r in rows
    ]
