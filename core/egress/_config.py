"""Operator settings of the egress lane, and their strict JSON loader.

    >>> config = load_egress_config(pathlib.Path("egress.json"))  # doctest: +SKIP

Every key is optional; an unknown key is refused so a typo never leaves a
limit at its default. Secret values are never in this file: a credential rule
names the environment variable that holds its value.
"""

from __future__ import annotations

import ipaddress
import json
import math
import pathlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any

from vivified.core.egress._errors import config_invalid
from vivified.core.errors import VivifiedError
from vivified.core.manifest import validate_allowed_domain

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GRANT_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
# Headers the core owns on the wire; a credential may not replace them.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "accept-encoding",
        "expect",
    }
)


@dataclass(frozen=True)
class CredentialRule:
    """Inject `header: $value_env` into requests of `plugin_id` to `domain`
    (an exact host or a one-label wildcard, as in a manifest allowlist)."""

    plugin_id: str
    domain: str
    header: str
    value_env: str

    def __post_init__(self) -> None:
        if not self.plugin_id:
            raise config_invalid("credentials: plugin_id must not be empty")
        try:
            normalised = validate_allowed_domain(self.domain)
        except VivifiedError as exc:
            raise config_invalid(f"credentials: {exc.message}") from None
        object.__setattr__(self, "domain", normalised)
        if not TOKEN.fullmatch(self.header) or self.header.lower() in _RESERVED_HEADERS:
            raise config_invalid(f"credentials: {self.header!r} is not a header a credential may set")
        if not _ENV_NAME.fullmatch(self.value_env):
            raise config_invalid(f"credentials: {self.value_env!r} is not an environment variable name")


@dataclass(frozen=True)
class TunnelGrant:
    """The operator lets `plugin_id` open tunnels to exactly `host:port`, even if
    its manifest does not list it. When `host` is an IP address, that one address
    is admitted although it is not public (e.g. a development SMTP sink on
    loopback); the core's own endpoints and deny ranges stay refused. A host name
    is resolved and checked like any other."""

    plugin_id: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.plugin_id:
            raise config_invalid("tunnel_grants: plugin_id must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise config_invalid(f"tunnel_grants: port {self.port!r} is not a TCP port")
        host = self.host.lower().removesuffix(".") if isinstance(self.host, str) else ""
        try:
            host = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not _GRANT_HOST.fullmatch(host):
                raise config_invalid(f"tunnel_grants: {self.host!r} is not an IP address or host name") from None
        object.__setattr__(self, "host", host)


@dataclass(frozen=True)
class EgressConfig:
    """Limits and overrides of the egress proxy. Defaults are the production ones."""

    allow_ranges: tuple[IPNetwork, ...] = ()
    """Addresses admitted although not public (like Smokescreen's --allow-range): for tests and
    private deployments only. Off by default."""
    deny_ranges: tuple[IPNetwork, ...] = ()
    """Extra addresses always refused, even inside an allow range."""
    max_request_bytes: int = 1024 * 1024
    """Largest request body a plugin may send."""
    max_response_bytes: int = 10 * 1024 * 1024
    """Largest (decoded) response body; Fetch is also bounded by the gRPC message size."""
    total_timeout_seconds: float = 30.0
    """Whole fetch, redirects included; a shorter request timeout wins."""
    idle_timeout_seconds: float = 10.0
    """Longest wait for the next bytes from the upstream."""
    connect_timeout_seconds: float = 5.0
    """Name resolution plus TCP and TLS connection setup, per hop."""
    max_redirects: int = 5
    """Redirect hops followed, each checked again like the first request."""
    per_plugin_rate_per_second: float = 50.0
    """Sustained fetches per second per plugin."""
    per_plugin_burst: int = 100
    """Fetches a plugin may start at once after being idle."""
    per_plugin_concurrency: int = 8
    """Fetches of one plugin in flight at a time; more are refused, not queued."""
    credentials: tuple[CredentialRule, ...] = ()
    """Secret headers the core adds for a (plugin, domain)."""
    report_only_plugins: frozenset[str] = field(default_factory=frozenset)
    """Plugins whose allowlist misses are logged and audited as `would_deny` but allowed.
    Address (SSRF) checks are never report-only."""
    tunnel_grants: tuple[TunnelGrant, ...] = ()
    """Tunnel endpoints the operator allows a plugin beyond its manifest (see TunnelGrant)."""
    tunnel_max_bytes: int = 64 * 1024 * 1024
    """Bytes a tunnel may carry in each direction."""
    tunnel_max_seconds: float = 300.0
    """Longest life of a tunnel; a shorter timeout in the plugin's request wins."""
    tunnel_idle_seconds: float = 60.0
    """A tunnel with no bytes in either direction for this long is closed."""
    resolve: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Host names answered from this table instead of DNS (like curl's --resolve),
    e.g. for a private API or a test server; the addresses are still checked like
    any resolved address (a loopback one needs an allow range)."""

    def resolve_overrides(
        self, resolver: Callable[[str, int], Awaitable[list[str]]]
    ) -> Callable[[str, int], Awaitable[list[str]]]:
        """`resolver`, answering the hosts of `resolve` from the table."""
        table = dict(self.resolve)
        if not table:
            return resolver

        async def resolve(host: str, port: int) -> list[str]:
            fixed = table.get(host.lower().removesuffix("."))
            return list(fixed) if fixed is not None else await resolver(host, port)

        return resolve

    def __post_init__(self) -> None:
        for name in (
            "max_request_bytes",
            "max_response_bytes",
            "per_plugin_burst",
            "per_plugin_concurrency",
            "tunnel_max_bytes",
        ):
            if getattr(self, name) < 1:
                raise config_invalid(f"{name} must be at least 1")
        for name in (
            "total_timeout_seconds",
            "idle_timeout_seconds",
            "connect_timeout_seconds",
            "per_plugin_rate_per_second",
            "tunnel_max_seconds",
            "tunnel_idle_seconds",
        ):
            if not 0 < getattr(self, name) < math.inf:
                raise config_invalid(f"{name} must be positive and finite")
        if self.max_redirects < 0:
            raise config_invalid("max_redirects must not be negative")
        for network in self.allow_ranges:
            if network.prefixlen == 0:
                raise config_invalid(f"allow_ranges: {network} would switch the address check off")
        keys = [(rule.plugin_id, rule.domain, rule.header.lower()) for rule in self.credentials]
        if len(keys) != len(set(keys)):
            raise config_invalid("credentials: a (plugin_id, domain, header) is listed twice")
        grants = [(grant.plugin_id, grant.host, grant.port) for grant in self.tunnel_grants]
        if len(grants) != len(set(grants)):
            raise config_invalid("tunnel_grants: a (plugin_id, host, port) is listed twice")


def _networks(key: str, value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise config_invalid(f"{key} must be a list of CIDR strings")
    try:
        return tuple(ipaddress.ip_network(item, strict=True) for item in value)
    except ValueError as exc:
        raise config_invalid(f"{key}: {exc}") from None


def _credential(index: int, value: Any) -> CredentialRule:
    names = {f.name for f in fields(CredentialRule)}
    if not isinstance(value, dict) or set(value) != names or not all(isinstance(v, str) for v in value.values()):
        raise config_invalid(f"credentials[{index}] must be an object with string keys {sorted(names)} exactly")
    return CredentialRule(**value)


def _grant(index: int, value: Any) -> TunnelGrant:
    if not isinstance(value, dict) or set(value) != {"plugin_id", "host", "port"}:
        raise config_invalid(f"tunnel_grants[{index}] must be an object with keys host, plugin_id, port exactly")
    if not isinstance(value["plugin_id"], str) or not isinstance(value["host"], str):
        raise config_invalid(f"tunnel_grants[{index}]: plugin_id and host must be strings")
    return TunnelGrant(**value)


def _resolve(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise config_invalid("resolve must be an object of host name → list of IP addresses")
    entries = []
    for host, addresses in value.items():
        name = host.lower().removesuffix(".") if isinstance(host, str) else ""
        if not _GRANT_HOST.fullmatch(name):
            raise config_invalid(f"resolve: {host!r} is not a host name")
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise config_invalid(f"resolve: {host!r} needs a non-empty list of IP addresses")
        try:
            entries.append((name, tuple(str(ipaddress.ip_address(a)) for a in addresses)))
        except ValueError as exc:
            raise config_invalid(f"resolve: {host!r}: {exc}") from None
    return tuple(sorted(entries))


def parse_egress_config(data: Any) -> EgressConfig:
    """An EgressConfig from decoded JSON; raises FailedPrecondition(EGRESS_CONFIG_INVALID)."""
    if not isinstance(data, dict):
        raise config_invalid("must be a JSON object")
    known = {f.name: f for f in fields(EgressConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise config_invalid(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("allow_ranges", "deny_ranges"):
            values[key] = _networks(key, value)
        elif key == "credentials":
            if not isinstance(value, list):
                raise config_invalid("credentials must be a list")
            values[key] = tuple(_credential(i, item) for i, item in enumerate(value))
        elif key == "tunnel_grants":
            if not isinstance(value, list):
                raise config_invalid("tunnel_grants must be a list")
            values[key] = tuple(_grant(i, item) for i, item in enumerate(value))
        elif key == "resolve":
            values[key] = _resolve(value)
        elif key == "report_only_plugins":
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise config_invalid("report_only_plugins must be a list of plugin ids")
            values[key] = frozenset(value)
        else:
            integral = known[key].type == "int"
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                raise config_invalid(f"{key} must be {'an integer' if integral else 'a number'}")
            values[key] = value
    return EgressConfig(**values)


def load_egress_config(path: pathlib.Path) -> EgressConfig:
    """Read an EgressConfig from a JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise config_invalid(f"cannot read {path}: {exc}") from None
    return parse_egress_config(data)
