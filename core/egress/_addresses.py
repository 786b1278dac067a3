"""Name resolution and address classification (SSRF guard).

Every address a name resolves to is classified, and the fetch is refused if
any of them is not a public unicast address, so a name cannot smuggle one
internal address among public ones. The order of the checks:

1. the core's own listening endpoints: always refused;
2. operator deny ranges: always refused;
3. operator allow ranges: admitted (tests, private deployments; off by default);
4. special-purpose ranges (IANA registries) and IPv6 forms that embed an IPv4
   address: refused, except NAT64 (64:ff9b::/96) whose embedded address is
   itself public — that is how IPv6-only hosts reach the IPv4 internet;
5. anything Python does not consider global: refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from vivified.core.egress._config import IPNetwork
from vivified.core.egress._errors import denied
from vivified.core.egress._url import IPAddress

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> addresses as strings, in the order to try them."""

_N = ipaddress.ip_network
_V4_SPECIAL: tuple[tuple[IPNetwork, str], ...] = (
    (_N("0.0.0.0/8"), "unspecified"),
    (_N("10.0.0.0/8"), "private"),
    (_N("100.64.0.0/10"), "cgnat"),
    (_N("127.0.0.0/8"), "loopback"),
    (_N("169.254.0.0/16"), "link_local"),
    (_N("172.16.0.0/12"), "private"),
    (_N("192.0.0.0/24"), "reserved"),
    (_N("192.0.2.0/24"), "documentation"),
    (_N("192.88.99.0/24"), "reserved"),
    (_N("192.168.0.0/16"), "private"),
    (_N("198.18.0.0/15"), "benchmarking"),
    (_N("198.51.100.0/24"), "documentation"),
    (_N("203.0.113.0/24"), "documentation"),
    (_N("224.0.0.0/4"), "multicast"),
    (_N("255.255.255.255/32"), "broadcast"),
    (_N("240.0.0.0/4"), "reserved"),
)
_V6_SPECIAL: tuple[tuple[IPNetwork, str], ...] = (
    (_N("::/128"), "unspecified"),
    (_N("::1/128"), "loopback"),
    (_N("::/96"), "ipv4_compatible"),
    (_N("64:ff9b:1::/48"), "nat64_local"),
    (_N("100::/64"), "reserved"),
    (_N("2001::/32"), "teredo"),
    (_N("2001::/23"), "reserved"),
    (_N("2001:db8::/32"), "documentation"),
    (_N("2002::/16"), "6to4"),
    (_N("3fff::/20"), "documentation"),
    (_N("5f00::/16"), "reserved"),
    (_N("fc00::/7"), "unique_local"),
    (_N("fe80::/10"), "link_local"),
    (_N("fec0::/10"), "site_local"),
    (_N("ff00::/8"), "multicast"),
)
_NAT64 = _N("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = _N("2000::/3")


def special_purpose(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return special_purpose(ip.ipv4_mapped)
        if ip in _NAT64:
            embedded = special_purpose(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return None if embedded is None else f"nat64_{embedded}"
        table = _V6_SPECIAL
    else:
        table = _V4_SPECIAL
    for network, label in table:
        if ip in network:
            return label
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None if ip.is_global else "reserved"


def _parse(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses the core may connect to."""

    allow_ranges: tuple[IPNetwork, ...] = ()
    deny_ranges: tuple[IPNetwork, ...] = ()
    own_endpoints: frozenset[tuple[IPAddress | None, int]] = frozenset()
    """(address, port) the core listens on; None = a wildcard bind (0.0.0.0, ::, a name)."""

    def verdict(self, ip: IPAddress, port: int) -> str | None:
        """Why the address is refused, or None if the core may connect to it."""
        allowed_range = any(ip in network for network in self.allow_ranges)
        for own_ip, own_port in self.own_endpoints:
            if own_port == port and (ip == own_ip or (own_ip is None and (allowed_range or ip.is_loopback))):
                return "core_endpoint"
        if any(ip in network for network in self.deny_ranges):
            return "deny_range"
        if allowed_range:
            return None
        return special_purpose(ip)

    def check(self, addresses: Sequence[str], port: int) -> list[str]:
        """The addresses to connect to, in order; PERMISSION_DENIED if any is refused."""
        if not addresses:
            raise denied("the host resolved to no addresses", "no_addresses")
        checked = []
        for text in addresses:
            ip = _parse(text)
            why = "unparseable" if ip is None else self.verdict(ip, port)
            if why is not None or ip is None:
                raise denied(
                    f"the host resolves to {text}, which is not a public address ({why})",
                    "address_not_public",
                    address=text,
                    address_class=why or "unparseable",
                )
            checked.append(str(ip))
        return checked


def endpoints_from(addresses: Iterable[str]) -> frozenset[tuple[IPAddress | None, int]]:
    """Own endpoints from `host:port` listen addresses, e.g. CoreConfig.listen_address."""
    endpoints: set[tuple[IPAddress | None, int]] = set()
    for address in addresses:
        host, _, port = address.rpartition(":")
        ip = _parse(host.strip("[]"))
        endpoints.add((None if ip is None or ip.is_unspecified else ip, int(port)))
    return frozenset(endpoints)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system's resolver (getaddrinfo), TCP only."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)
