"""`vivified bench <scenario>`: the project's own benchmark (docs/performance.md).

The core's CLI runs this as `python -m vivified.bench`, a process of its own:
the benchmark drives plugins through the SDK, which the core may not import."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from vivified.bench import run_chain_bench, run_egress_bench
from vivified.bench._events import run_events_bench
from vivified.bench._invoke import run_invoke_bench
from vivified.bench._rest import run_rest_bench
from vivified.bench._sandbox import run_sandbox_bench
from vivified.bench._storage import run_storage_bench


def build_parser() -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(
        prog="vivified bench",
        description="measure the platform; ratios are taken side by side in one run",
    )
    scenarios = bench.add_subparsers(dest="scenario", required=True)
    chain = scenarios.add_parser("chain", help="interceptor chain CPU per call (P2) and policy growth 10→1000 (P8)")
    chain.add_argument("--calls", type=int, default=20_000, help="calls through the chain per sink (default 20000)")
    chain.add_argument("--json", action="store_true", help="print one JSON object")
    invoke = scenarios.add_parser(
        "invoke", help="brokered operator-lane call vs direct mTLS call to the same plugin (P1)"
    )
    invoke.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    invoke.add_argument("--calls", type=int, default=200, help="sequential calls per path per round (default 200)")
    invoke.add_argument("--json", action="store_true", help="print one JSON object")
    events = scenarios.add_parser(
        "events",
        help="event bus: streamed vs unary publish (P3), end-to-end vs ack latency (P4), "
        "Redis vs embedded store (P5), fan-out to 4 vs 1 subscribers (P6)",
    )
    events.add_argument("--events", type=int, default=2000, help="events per path per round (default 2000)")
    events.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    events.add_argument("--concurrency", type=int, default=32, help="concurrent callers of unary Publish (default 32)")
    events.add_argument("--json", action="store_true", help="print one JSON object")
    egress = scenarios.add_parser("egress", help="egress proxy fetch vs direct fetch of a local server (P7)")
    egress.add_argument("--rounds", type=int, default=300, help="interleaved rounds (default 300)")
    egress.add_argument("--https", action="store_true", help="use a local HTTPS server")
    egress.add_argument("--json", action="store_true", help="print one JSON object")
    storage = scenarios.add_parser(
        "storage",
        help="object put/get through a core, 1 MiB and 64 KiB objects, vs a plain file, both backends (P10)",
    )
    storage.add_argument("--objects", type=int, default=40, help="objects per size per round (default 40)")
    storage.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    storage.add_argument("--database-url", help="database backend on this database (default: SQLite in a temp dir)")
    storage.add_argument(
        "--no-in-process", action="store_true", help="skip the store layer measured in process (no core)"
    )
    storage.add_argument("--json", action="store_true", help="print one JSON object")
    rest = scenarios.add_parser(
        "rest", help="ListPlugins through the REST bridge (the real Envoy) vs direct gRPC to the core, p50"
    )
    rest.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    rest.add_argument("--calls", type=int, default=200, help="sequential calls per path per round (default 200)")
    rest.add_argument("--json", action="store_true", help="print one JSON object")
    sandbox = scenarios.add_parser(
        "sandbox",
        help="brokered call to a sandboxed plugin over its Unix socket vs the same plugin over loopback TCP, p50",
    )
    sandbox.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    sandbox.add_argument("--calls", type=int, default=200, help="sequential calls per path per round (default 200)")
    sandbox.add_argument("--json", action="store_true", help="print one JSON object")
    return bench


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: list[str] = []
    try:
        return run(args, out)
    finally:
        for line in out:
            print(line, flush=True)


def run(args: argparse.Namespace, out: list[str]) -> int:
    if args.scenario == "storage":
        if args.objects < 1 or args.rounds < 1:
            out.append("error: --objects and --rounds must be at least 1")
            return 2
        report = asyncio.run(
            run_storage_bench(
                count=args.objects,
                rounds=args.rounds,
                database_url=args.database_url,
                in_process=not args.no_in_process,
            )
        )
    elif args.scenario == "egress":
        if args.rounds < 10:
            out.append("error: --rounds must be at least 10")
            return 2
        report = asyncio.run(run_egress_bench(rounds=args.rounds, https=args.https))
    elif args.scenario == "events":
        if args.events < 50 or args.rounds < 1 or args.concurrency < 1:
            out.append("error: --events must be at least 50, --rounds and --concurrency at least 1")
            return 2
        report = asyncio.run(run_events_bench(events=args.events, rounds=args.rounds, concurrency=args.concurrency))
    elif args.scenario == "rest":
        if args.rounds < 1 or args.calls < 10:
            out.append("error: --rounds must be at least 1 and --calls at least 10")
            return 2
        report = asyncio.run(run_rest_bench(rounds=args.rounds, calls=args.calls))
    elif args.scenario == "sandbox":
        if args.rounds < 1 or args.calls < 10:
            out.append("error: --rounds must be at least 1 and --calls at least 10")
            return 2
        report = asyncio.run(run_sandbox_bench(rounds=args.rounds, calls=args.calls))
    elif args.scenario == "invoke":
        if args.rounds < 1 or args.calls < 10:
            out.append("error: --rounds must be at least 1 and --calls at least 10")
            return 2
        report = asyncio.run(run_invoke_bench(rounds=args.rounds, latency_calls=args.calls))
    elif args.calls < 1000:
        out.append("error: --calls must be at least 1000")
        return 2
    else:
        report = asyncio.run(run_chain_bench(calls=args.calls))
    out.extend([report.to_json()] if args.json else report.to_table())
    return 0
