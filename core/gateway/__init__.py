"""The operator lane: brokered plugin-to-plugin calls.

GatewayService   OperatorGatewayService.Invoke (Any in, Any out)
ContractProxy    transparent typed calls with the `x-vivified-target` header
OperatorLane     policy, forwarding, redaction and audit facts of one call
Forwarder        deadline cap, safe retries, circuit breaker, bulkhead
PolicySet        packaged rules + rules implied by approved manifests
CircuitBreakers  per-target breakers (the event bus guards its store with one too)
"""

from vivified.core.gateway._breaker import HALF_OPEN, CircuitBreakers
from vivified.core.gateway._forward import Forwarder, GatewayConfig, TargetError
from vivified.core.gateway._lane import IDEMPOTENCY_HEADER, TARGET_HEADER, OperatorLane
from vivified.core.gateway._lane_policy import PolicySet, lane_resource, lane_rules
from vivified.core.gateway._service import ContractProxy, GatewayService
from vivified.core.gateway._wiring import Gateway, build_gateway

__all__ = [
    "HALF_OPEN",
    "IDEMPOTENCY_HEADER",
    "TARGET_HEADER",
    "CircuitBreakers",
    "ContractProxy",
    "Forwarder",
    "Gateway",
    "GatewayConfig",
    "GatewayService",
    "OperatorLane",
    "PolicySet",
    "TargetError",
    "build_gateway",
    "lane_resource",
    "lane_rules",
]
