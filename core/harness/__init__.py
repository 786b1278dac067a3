"""The core's interceptor chain served in process, for tests and benchmarks."""

from vivified.core.harness._serve import ServedChain, Servicer, chain_deps, serve

__all__ = ["ServedChain", "Servicer", "chain_deps", "serve"]
