"""`vivified bench` scenarios: ratios measured side by side in one run."""

from vivified.bench._chain import run_chain_bench
from vivified.bench._egress import run_egress_bench
from vivified.bench._report import BenchReport, machine_facts

__all__ = ["BenchReport", "machine_facts", "run_chain_bench", "run_egress_bench"]
