"""Assembles the egress lane for the core."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace

from vivified.core.chain import Principal
from vivified.core.clock import Clock
from vivified.core.egress._addresses import endpoints_from
from vivified.core.egress._config import EgressConfig
from vivified.core.egress._credentials import SecretReader
from vivified.core.egress._service import Annotate, EgressService
from vivified.core.registry import PluginRecord


def build_egress(
    *,
    config: EgressConfig,
    plugin_lookup: Callable[[str], PluginRecord | None],
    identify: Callable[[Any], Principal],
    annotate: Annotate,
    clock: Clock,
    own_addresses: Iterable[str],
    environ: Mapping[str, str],
    max_message_bytes: int,
    plugin_secret: SecretReader | None = None,
    tracer: trace.Tracer | None = None,
    on_fetch: Callable[[str, str, float], None] | None = None,
) -> EgressService:
    """`own_addresses` are the core's configured listen addresses, which the
    proxy refuses to reach (the bound ones are added with `listening_on` once
    the core serves); `environ` is read once, for credential values;
    `plugin_secret` reads the secret config values the core injects as credentials."""
    return EgressService(
        plugin_lookup=plugin_lookup,
        identify=identify,
        annotate=annotate,
        config=config,
        clock=clock,
        own_endpoints=endpoints_from(list(own_addresses)),
        environ=environ,
        max_message_bytes=max_message_bytes,
        plugin_secret=plugin_secret,
        tracer=tracer,
        on_fetch=on_fetch,
    )
