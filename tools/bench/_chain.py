"""`vivified bench chain`: the interceptor chain's CPU per call (P2) and how
policy decision time grows from 10 to 1,000 plugins and rules (P8).

The chain runs in process with its real layers — tracing, authentication from
a real certificate (parser cache warm), status gate, rate limit, policy, audit
— around a trivial handler, for a call the audit layer records (a plugin's
Deregister; an OK Heartbeat is counted, not audited). Three audit sinks are
measured in the same run: the real SQLite audit log with group commit in the
default `audit_durability=group` mode (P2) and in `fsync` mode, and an
in-memory sink, to show what the layers cost apart from durable audit. CPU is
the whole process's, so the writer and sync threads count."""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from vivified.bench._report import BenchReport
from vivified.core.audit import AuditLog, AuditRecord, CheckpointSigner, Durability
from vivified.core.ca import (
    CAConfig,
    CertificateAuthority,
    new_private_key,
)
from vivified.core.chain import Call, PluginView, RateLimitConfig, TokenBuckets, build_chain
from vivified.core.chain._methods import DEFAULT_FACTS
from vivified.core.clock import SystemClock
from vivified.core.db import create_engine_for, sqlite_url
from vivified.core.harness import chain_deps
from vivified.core.kinds import PluginStatus, PrincipalKind
from vivified.core.policy import (
    PolicyInput,
    Rule,
    RuleIndex,
    evaluate,
    load_default_rules,
)

DEREGISTER = "/vivified.registry.v1.PluginRegistryService/Deregister"


class _Context:
    """The part of a grpc.aio ServicerContext the chain reads."""

    def __init__(self, pem: bytes) -> None:
        self._auth = {"x509_pem_cert": [pem]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"


class _MemorySink:
    async def append(self, record: AuditRecord) -> None:
        return None


def _plugin_pem(ca: CertificateAuthority) -> bytes:
    key = new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_plugin_certificate("bench", csr.public_bytes(serialization.Encoding.PEM))
    return issued.cert_pem


async def _chain_cpu_us(ca: CertificateAuthority, sink: Any, calls: int, concurrency: int) -> float:
    deps = chain_deps(
        ca,
        sink,
        RuleIndex.build(load_default_rules()),
        plugin_lookup={"bench": PluginView(PluginStatus.ACTIVE, frozenset())}.get,
        buckets=TokenBuckets(lambda: RateLimitConfig(rate_per_second=1e9, burst=10**9), SystemClock()),
    )
    chain = build_chain(deps)

    run = chain.run  # the composed layers, without the gRPC runtime around them
    context = _Context(_plugin_pem(ca))

    async def handler(call: Call) -> None:
        call.response = b""

    async def one() -> None:
        call = Call(
            method=DEREGISTER,
            service="vivified.registry.v1.PluginRegistryService",
            method_name="Deregister",
            metadata={},
            context=context,  # type: ignore[arg-type]
            streaming=False,
            facts=chain.methods.get(DEREGISTER, DEFAULT_FACTS),
            terminal=handler,
        )
        await run(call)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    await worker(200)  # warm the certificate cache and the audit writer
    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


def _decision_ns(plugins: int, rules_per_plugin: int, samples: int) -> float:
    rules = list(load_default_rules())
    for p in range(plugins):
        for r in range(rules_per_plugin):
            rules.append(
                Rule(
                    id=f"plugin-{p}-rule-{r}",
                    effect="allow",
                    principal_kinds=frozenset({PrincipalKind.PLUGIN}),
                    principal_ids=frozenset({f"plugin-{p}"}),
                    methods=frozenset({f"/vivified.bench.v1.BenchService/Op{r}"}),
                    required_traits=frozenset({"communication_plugin"}),
                )
            )
    index = RuleIndex.build(rules)
    inputs = [
        PolicyInput(
            PrincipalKind.PLUGIN,
            f"plugin-{p % plugins}",
            frozenset({"communication_plugin"}),
            "vivified.bench.v1.BenchService",
            f"/vivified.bench.v1.BenchService/Op{p % rules_per_plugin}",
        )
        for p in range(997)
    ]
    rounds = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        for item in inputs:
            evaluate(index, item)
        rounds.append((time.perf_counter_ns() - started) / len(inputs))
    return statistics.median(rounds)


async def run_chain_bench(calls: int = 20_000, concurrency: int = 16, samples: int = 31) -> BenchReport:
    report = BenchReport("chain")
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        ca = CertificateAuthority.load_or_create(directory / "ca", CAConfig(), SystemClock())
        durable: dict[str, float] = {}
        for mode in ("group", "fsync"):
            print(f"bench chain: SQLite audit, audit_durability={mode}", file=sys.stderr, flush=True)
            engine = create_engine_for(sqlite_url(directory / f"bench-{mode}.db"))
            log = AuditLog(
                engine,
                clock=SystemClock(),
                signer=CheckpointSigner.load_or_create(directory / "cp.key"),
                checkpoint_path=directory / f"cp-{mode}.jsonl",
                durability=Durability(mode),
            )
            await log.start()
            try:
                durable[mode] = await _chain_cpu_us(ca, log, calls, concurrency)
            finally:
                await log.close()
                engine.dispose()
        print("bench chain: in-memory audit sink", file=sys.stderr, flush=True)
        layers_only = await _chain_cpu_us(ca, _MemorySink(), calls, concurrency)
    report.rows.append(
        {
            "path": "chain + SQLite audit, audit_durability=group (default)",
            "cpu_us_per_call": round(durable["group"], 1),
        }
    )
    report.rows.append(
        {"path": "chain + SQLite audit, audit_durability=fsync", "cpu_us_per_call": round(durable["fsync"], 1)}
    )
    report.rows.append({"path": "chain, audit sink in memory", "cpu_us_per_call": round(layers_only, 1)})
    small, large = _decision_ns(10, 1, samples), _decision_ns(1000, 1, samples)
    report.rows.append({"path": "policy decision, 10 plugins / 15 rules", "ns_per_decision": round(small)})
    report.rows.append({"path": "policy decision, 1000 plugins / 1005 rules", "ns_per_decision": round(large)})
    report.ratios["P2.chain_cpu_us"] = round(durable["group"], 1)
    report.ratios["P8.growth"] = round(large / small, 3)
    return report
