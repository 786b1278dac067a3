"""The operator lane: brokered plugin-to-plugin calls.

    GatewayService   OperatorGatewayService.Invoke (Any in, Any out)
    ContractProxy    transparent typed calls with the `x-vivified-target` header
    OperatorLane     policy, forwarding, redaction and audit facts of one call
    Forwarder        deadline cap, safe retries, circuit breaker, bulkhead
    PolicySet        packaged rules + rules implied by approved manifests
"""

from vivified.core.gateway._forward import Forwarder, GatewayConfig, TargetError
from vivified.core.gateway._lane import IDEMPOTENCY_HEADER, TARGET_HEADER, OperatorLane
from vivified.core.gateway._lane_policy import PolicySet, lane_resource, lane_rules
from vivified.core.gateway._service import ContractProxy, GatewayService

__all__ = [
    "IDEMPOTENCY_HEADER",
    "TARGET_HEADER",
    "ContractProxy",
    "Forwarder",
    "GatewayConfig",
    "GatewayService",
    "OperatorLane",
    "PolicySet",
    "TargetError",
    "lane_resource",
    "lane_rules",
]
