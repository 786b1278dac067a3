"""Assembles the operator lane for the core: policy, forwarding, and the two
ways in (`Invoke` and the transparent contract proxy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from vivified.core.chain import call_principal
from vivified.core.clock import Clock
from vivified.core.gateway._forward import Forwarder, GatewayConfig
from vivified.core.gateway._lane import OperatorLane
from vivified.core.gateway._lane_policy import PolicySet
from vivified.core.gateway._service import ContractProxy, GatewayService
from vivified.core.identity import Delegations
from vivified.core.registry import PluginConnector, PluginRecord


@dataclass(frozen=True)
class Gateway:
    """The operator lane of one core; it has nothing to start or stop (the
    plugin connections it forwards over belong to the registry)."""

    lane: OperatorLane
    service: GatewayService
    contract_proxy: ContractProxy


def build_gateway(
    *,
    policy: PolicySet,
    config: Callable[[], GatewayConfig],
    lookup: Callable[[str], PluginRecord | None],
    connector: PluginConnector,
    clock: Clock,
    delegations: Delegations,
    on_breaker: Callable[[str, str], None],
    tracer: trace.Tracer | None = None,
) -> Gateway:
    """`config` returns the current gateway settings (read per call)."""
    lane = OperatorLane(
        policy=policy,
        forwarder=Forwarder(config=config, lookup=lookup, connector=connector, clock=clock, on_breaker=on_breaker),
        lookup=lookup,
        delegations=delegations,
        tracer=tracer,
    )
    return Gateway(
        lane=lane, service=GatewayService(lane, call_principal), contract_proxy=ContractProxy(lane, call_principal)
    )
