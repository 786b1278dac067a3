"""p50 of a brokered call to a Node.js plugin against the same call to the
Python echo plugin, side by side in one run (issue 13's closing figure).

    .venv/bin/python tools/bench_node_call.py [--calls 300] [--rounds 5] [--json]

One real `vivified core` on loopback; the example echo plugin
(`python -m vivified.plugins.example_echo`) and a Node.js plugin written by
`vivified create-plugin bench-node --contract communication --lang node`
(installed offline from sdk/nodejs, built, run with `node`) both registered
with it; one caller identity allowed to call SendMessage on both. Each round
times `--calls` sequential brokered SendMessage calls (mTLS, the core's whole
interceptor chain, audit, forwarding) to each plugin, alternating which goes
first; the p50 over all samples of each is reported with their ratio."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from google.protobuf import json_format

from vivified.admin.v1 import plugin_admin_pb2 as admin_pb
from vivified.bench._platform import Platform, RunningCore
from vivified.communication.v1 import communication_pb2, communication_pb2_grpc
from vivified.core.manifest import load_manifest_file
from vivified.manifest.v1.manifest_pb2 import PluginManifest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEND = "vivified.communication.v1.CommunicationPluginService/SendMessage"
NODE_PLUGIN = "bench-node"


def _progress(text: str) -> None:
    print(f"bench node-call: {text}", file=sys.stderr, flush=True)


def _node_project(parent: pathlib.Path) -> tuple[list[str], pathlib.Path]:
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "create-plugin",
            NODE_PLUGIN,
            "--contract",
            "communication",
            "--lang",
            "node",
            "--dir",
            str(parent),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(created.stderr)
    project = parent / NODE_PLUGIN
    for step in (
        ["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"],
        ["npm", "run", "--silent", "build"],
    ):
        subprocess.run(step, cwd=project, check=True, capture_output=True)
    main = json.loads((project / "package.json").read_text())["main"]
    return ["node", str(project / main)], project / "manifest.yaml"


async def _start(
    platform: Platform, core: RunningCore, env: dict[str, str], argv: list[str], manifest_path: pathlib.Path
) -> str:
    manifest = load_manifest_file(manifest_path)
    token = (await core.admin.ApprovePlugin(admin_pb.ApprovePluginRequest(manifest=manifest, replace=True))).join_token
    platform.spawn(
        argv,
        {
            **env,
            "VIVIFIED_MANIFEST": str(manifest_path),
            "VIVIFIED_JOIN_TOKEN": token,
            "VIVIFIED_CA_FILE": str(core.data / "operator" / "ca.crt"),
            "VIVIFIED_CORE_ADDRESS": core.info["listen_address"],
            "VIVIFIED_BOOTSTRAP_ADDRESS": core.info["bootstrap_address"],
        },
    )
    for _ in range(600):
        listed = await core.admin.ListPlugins(admin_pb.ListPluginsRequest())
        plugin = next((p for p in listed.plugins if p.plugin_id == manifest.id), None)
        if plugin and plugin.health == admin_pb.PLUGIN_HEALTH_HEALTHY:
            return manifest.id
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{manifest.id} did not become healthy (logs in {platform.dir})")


async def measure(calls: int, rounds: int) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(pathlib.Path(tmp))
        try:
            _progress("writing and building the Node.js plugin (create-plugin --lang node)")
            node_argv, node_manifest = _node_project(pathlib.Path(tmp) / "src")
            # The rate limit layer still runs; its limit is above what this machine reaches.
            core = await platform.start_core("data", env, "--call-rate", "1000000")
            echo_manifest = ROOT / "plugins" / "example_echo" / "manifest.yaml"
            _progress("starting the Python echo plugin and the Node.js plugin")
            python_id = await _start(
                platform, core, env, [sys.executable, "-m", "vivified.plugins.example_echo"], echo_manifest
            )
            node_id = await _start(platform, core, env, node_argv, node_manifest)
            caller = json_format.ParseDict(
                {
                    "id": "bench-caller",
                    "name": "bench caller",
                    "version": "0.1.0",
                    "contracts": ["vivified.storage.v1.StoragePluginService"],
                    "traits": ["storage_plugin"],
                    "calls": [{"plugin_id": python_id, "method": SEND}, {"plugin_id": node_id, "method": SEND}],
                },
                PluginManifest(),
            )
            channel = await core.register(caller)
            stub = communication_pb2_grpc.CommunicationPluginServiceStub(channel)
            request = communication_pb2.SendMessageRequest(
                message=communication_pb2.CanonicalMessage(
                    message_id="bench", to_address="a@example.com", subject="s", content="x" * 200
                )
            )
            targets = {"python echo (example-echo)": python_id, "node (create-plugin --lang node)": node_id}
            samples: dict[str, list[float]] = {name: [] for name in targets}

            async def timed(plugin_id: str, n: int) -> list[float]:
                metadata = (("x-vivified-target", plugin_id),)
                out = []
                for _ in range(n):
                    started = time.perf_counter()
                    reply = await stub.SendMessage(request, metadata=metadata, timeout=10)
                    out.append(time.perf_counter() - started)
                    if reply.message_id != "bench":
                        raise RuntimeError(f"{plugin_id} answered {reply}")
                return out

            for name, plugin_id in targets.items():
                await timed(plugin_id, 20)  # warm-up: connections, JIT
            for round_no in range(rounds):
                order = list(targets.items()) if round_no % 2 == 0 else list(reversed(targets.items()))
                for name, plugin_id in order:
                    samples[name].extend(await timed(plugin_id, calls))
                _progress(f"round {round_no + 1}/{rounds} done")
            await channel.close()
        finally:
            await platform.close()
    p50 = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    python_p50, node_p50 = p50["python echo (example-echo)"], p50["node (create-plugin --lang node)"]
    return {
        "calls_per_plugin": calls * rounds,
        "p50_ms": {name: round(value, 3) for name, value in p50.items()},
        "p90_ms": {name: round(statistics.quantiles(values, n=10)[8] * 1000, 3) for name, values in samples.items()},
        "ratio_node_over_python": round(node_p50 / python_p50, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per plugin per round (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating which plugin goes first (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = asyncio.run(measure(args.calls, args.rounds))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in result["p50_ms"].items():  # type: ignore[attr-defined]
            print(f"brokered SendMessage p50 {name}: {value:.3f} ms (p90 {result['p90_ms'][name]:.3f} ms)")  # type: ignore[index]
        print(f"ratio node/python p50: {result['ratio_node_over_python']} over {result['calls_per_plugin']} calls each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
