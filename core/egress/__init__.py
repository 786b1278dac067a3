"""The egress lane: an SSRF-safe HTTP proxy the core runs for plugins.

    >>> service = EgressService(
    ...     plugin_lookup=store.get,
    ...     identify=authenticator.principal,
    ...     annotate=lambda context, fields: annotate(**fields),
    ...     config=load_egress_config(path),
    ...     own_endpoints=endpoints_from([config.listen_address, config.bootstrap_address]),
    ...     environ=os.environ,
    ... )  # doctest: +SKIP

A tunnel (`Connect`) is allowed only to a `host:port` of the plugin's
`security.allowed_tunnels` or an operator tunnel grant, with the same address
checks. A fetch is allowed only for a plugin with the `external_service` trait, only
to hosts on its own approved allowlist and ports, only to public addresses
(or an operator allow range), within size, time, rate and concurrency limits.
Errors are described in `_errors`.
"""

from vivified.core.egress._addresses import (
    AddressPolicy,
    Resolver,
    endpoints_from,
    special_purpose,
    system_resolver,
)
from vivified.core.egress._allowlist import Allowlist, host_matches
from vivified.core.egress._client import (
    Connector,
    HttpClient,
    UpstreamResponse,
    open_stream,
)
from vivified.core.egress._config import (
    CredentialRule,
    EgressConfig,
    IPNetwork,
    TunnelGrant,
    load_egress_config,
    parse_egress_config,
)
from vivified.core.egress._credentials import Credentials, Secret
from vivified.core.egress._decode import BodyDecoder
from vivified.core.egress._errors import DOMAIN
from vivified.core.egress._fetch import Caller, Fetcher, Outgoing
from vivified.core.egress._service import EgressService
from vivified.core.egress._tunnel import Tunnel, TunnelAllowlist, Tunneler, parse_endpoint
from vivified.core.egress._url import EgressUrl, parse_url, redirect_url
from vivified.core.egress._wire import Steps
from vivified.core.egress._wiring import build_egress
from vivified.core.errors import DeadlineExceeded

__all__ = [
    "DOMAIN",
    "AddressPolicy",
    "Allowlist",
    "BodyDecoder",
    "Caller",
    "Connector",
    "CredentialRule",
    "Credentials",
    "DeadlineExceeded",
    "EgressConfig",
    "EgressService",
    "EgressUrl",
    "Fetcher",
    "HttpClient",
    "IPNetwork",
    "Outgoing",
    "Resolver",
    "Secret",
    "Steps",
    "Tunnel",
    "TunnelAllowlist",
    "TunnelGrant",
    "Tunneler",
    "UpstreamResponse",
    "build_egress",
    "endpoints_from",
    "host_matches",
    "load_egress_config",
    "open_stream",
    "parse_egress_config",
    "parse_endpoint",
    "parse_url",
    "redirect_url",
    "special_purpose",
    "system_resolver",
]
