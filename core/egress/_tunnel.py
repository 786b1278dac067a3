"""TCP tunnels for plugins (`EgressProxyService.Connect`), e.g. SMTP.

A tunnel goes to a `host:port` that the plugin's approved manifest lists under
`security.allowed_tunnels`, or that the operator grants it (`tunnel_grants`).
The endpoint passes the same checks as a fetch: the host is parsed by the
fetch URL parser, the name is resolved once, every resolved address is
checked by the same `AddressPolicy`, and only a checked address is dialled.
Then bytes are moved both ways, unread and unchanged (TLS inside the tunnel
is end to end between the plugin and the server), within a byte cap per
direction, an idle limit and a total deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from vivified.core.egress._addresses import AddressPolicy, Resolver
from vivified.core.egress._allowlist import host_matches
from vivified.core.egress._client import Connector
from vivified.core.egress._config import EgressConfig, IPNetwork, TunnelGrant
from vivified.core.egress._errors import denied, request_invalid, timed_out, too_large, upstream_failed
from vivified.core.egress._url import parse_url
from vivified.core.errors import VivifiedError
from vivified.core.manifest import validate_tunnel
from vivified.manifest.v1.manifest_pb2 import PluginManifest

_log = logging.getLogger(__name__)
READ_SIZE = 64 * 1024
Note = Callable[..., None]
Send = Callable[[bytes], Awaitable[None]]
# Characters that make a host a URL fragment; refused before the URL parser sees it.
_NOT_IN_HOST = frozenset("/?#@\\%[] \t\r\n")


class TunnelAllowlist:
    """The `host:port` endpoints one plugin may tunnel to."""

    __slots__ = ("_entries", "_granted")

    def __init__(self, entries: Iterable[str], grants: Iterable[TunnelGrant] = ()) -> None:
        parsed: set[tuple[str, int]] = set()
        for entry in entries:
            try:
                parsed.add(validate_tunnel(entry))
            except VivifiedError:
                _log.error("ignoring a tunnel allowlist entry that no longer validates: %r", entry)
        self._entries = frozenset(parsed)
        self._granted = frozenset((grant.host, grant.port) for grant in grants)

    @classmethod
    def from_manifest(cls, manifest: PluginManifest, config: EgressConfig) -> TunnelAllowlist:
        grants = [g for g in config.tunnel_grants if g.plugin_id == manifest.id]
        return cls(manifest.security.allowed_tunnels, grants)

    def granted(self, host: str, port: int) -> bool:
        """Whether the operator granted exactly this endpoint."""
        return (host, port) in self._granted

    def admits(self, host: str, port: int) -> bool:
        if self.granted(host, port):
            return True
        return any(p == port and host_matches(pattern, host) for pattern, p in self._entries)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ip: str | None
    """Set when the host is an IP address literal."""


def parse_endpoint(
    host: str, port: int, grant_ip: Callable[[str, int], bool], allow_ranges: Iterable[IPNetwork] = ()
) -> Endpoint:
    """Check a tunnel's host and port with the fetch URL parser. An IP literal
    is accepted only when the operator granted it (`grant_ip`) or it is inside
    an operator allow range, as for a fetch."""
    if not 0 < port < 65536:
        raise request_invalid("open.port must be 1-65535")
    if not host or len(host) > 253 or not host.isascii() or any(ch in _NOT_IN_HOST for ch in host):
        raise request_invalid("open.host must be a bare host name")
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    allow: tuple[IPNetwork, ...] = tuple(allow_ranges)
    authority = host
    if literal is not None:
        authority = f"[{literal}]" if literal.version == 6 else str(literal)
        if grant_ip(str(literal), port):
            allow = (*allow, ipaddress.ip_network(literal))
    url = parse_url(f"http://{authority}:{port}/", allowed_ports=frozenset({port}), allow_ranges=allow)
    return Endpoint(url.host, url.port, None if url.ip is None else str(url.ip))


class Tunnel:
    """One open tunnel: `run` moves bytes until the upstream closes."""

    def __init__(
        self,
        endpoint: Endpoint,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_bytes: int,
    ) -> None:
        self.endpoint = endpoint
        self.address = address
        self.sent = 0
        """Bytes from the plugin to the upstream."""
        self.received = 0
        """Bytes from the upstream to the plugin."""
        self._reader, self._writer, self._max = reader, writer, max_bytes
        self._activity: Callable[[], None] = lambda: None

    async def _downstream(self, send: Send) -> None:
        while True:
            try:
                piece = await self._reader.read(READ_SIZE)
            except OSError:
                raise upstream_failed("the connection to the upstream failed", "connection_lost") from None
            if not piece:
                return
            self.received += len(piece)
            if self.received > self._max:
                raise too_large(f"the tunnel carried more than {self._max} bytes from the upstream")
            self._activity()
            await send(piece)

    async def _upstream(self, pieces: AsyncIterator[bytes]) -> None:
        async for piece in pieces:
            self.sent += len(piece)
            if self.sent > self._max:
                raise too_large(f"the tunnel carried more than {self._max} bytes to the upstream")
            self._activity()
            self._writer.write(piece)
            try:
                await self._writer.drain()
            except OSError:
                raise upstream_failed("the connection to the upstream failed", "connection_lost") from None
        # The plugin is done sending: half-close, and keep reading the answer.
        if self._writer.can_write_eof():
            try:
                self._writer.write_eof()
            except OSError:
                pass

    async def run(self, pieces: AsyncIterator[bytes], send: Send, *, total_seconds: float, idle_seconds: float) -> None:
        """Move bytes both ways until the upstream closes its side."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(total_seconds) as total:
                async with asyncio.timeout(idle_seconds) as idle:
                    self._activity = lambda: idle.reschedule(loop.time() + idle_seconds)
                    await self._both(pieces, send)
        except TimeoutError:
            raise timed_out("total" if total.expired() else "idle") from None
        finally:
            self.close()

    async def _both(self, pieces: AsyncIterator[bytes], send: Send) -> None:
        down = asyncio.ensure_future(self._downstream(send))
        up = asyncio.ensure_future(self._upstream(pieces))
        try:
            pending = {down, up}
            while not down.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in (down, up):
                task.cancel()
            await asyncio.gather(down, up, return_exceptions=True)

    def close(self) -> None:
        self._writer.transport.abort()


class Tunneler:
    """Checks an endpoint and opens a tunnel to a checked address."""

    def __init__(
        self,
        *,
        config: EgressConfig,
        policy: Callable[[], AddressPolicy],
        resolver: Resolver,
        connector: Connector,
    ) -> None:
        self._config = config
        self._policy = policy
        self._resolver = resolver
        self._connector = connector

    def _admit(
        self, plugin_id: str, allowlist: TunnelAllowlist, endpoint: Endpoint, report_only: bool, note: Note
    ) -> None:
        if allowlist.admits(endpoint.host, endpoint.port):
            return
        if report_only:
            note(would_deny="tunnel_not_allowed")
            _log.warning(
                "egress report-only: %s tunnelled to %s:%d, which its allowlist does not admit",
                plugin_id,
                endpoint.host,
                endpoint.port,
            )
            return
        raise denied(
            f"{endpoint.host}:{endpoint.port} is not on this plugin's tunnel allowlist",
            "tunnel_not_allowed",
            host=endpoint.host,
            port=str(endpoint.port),
        )

    async def _addresses(self, endpoint: Endpoint, allowlist: TunnelAllowlist) -> list[str]:
        policy = self._policy()
        if endpoint.ip is not None:
            if allowlist.granted(endpoint.ip, endpoint.port):
                # Exactly the granted address, still never the core's own endpoints or a deny range.
                policy = dataclasses.replace(
                    policy, allow_ranges=(*policy.allow_ranges, ipaddress.ip_network(endpoint.ip))
                )
            return policy.check([endpoint.ip], endpoint.port)
        try:
            async with asyncio.timeout(self._config.connect_timeout_seconds):
                found = await self._resolver(endpoint.host, endpoint.port)
        except TimeoutError:
            raise timed_out("connect") from None
        except OSError:
            raise upstream_failed(f"could not resolve {endpoint.host}", "dns_failed") from None
        # Checked, then used as is: the connection never resolves the name again.
        return policy.check([str(a) for a in found], endpoint.port)

    async def open(
        self,
        plugin_id: str,
        allowlist: TunnelAllowlist,
        host: str,
        port: int,
        *,
        report_only: bool,
        note: Note,
    ) -> Tunnel:
        endpoint = parse_endpoint(host, port, allowlist.granted, self._config.allow_ranges)
        note(host=endpoint.host, port=str(endpoint.port))
        self._admit(plugin_id, allowlist, endpoint, report_only, note)
        addresses = await self._addresses(endpoint, allowlist)
        failure: VivifiedError = upstream_failed(f"could not connect to {endpoint.host}", "connect_failed")
        for address in addresses:
            try:
                async with asyncio.timeout(self._config.connect_timeout_seconds):
                    reader, writer = await self._connector(address, endpoint.port, None, None)
            except TimeoutError:
                failure = timed_out("connect")
            except OSError:
                failure = upstream_failed(f"could not connect to {endpoint.host}", "connect_failed")
            else:
                note(address=address)
                return Tunnel(endpoint, address, reader, writer, self._config.tunnel_max_bytes)
        raise failure
