"""One fetch, hop by hop: every hop (the first request and each redirect) is
parsed, matched against the plugin's allowlist, resolved, address-checked and
sent to the checked address only. Redirects are followed up to the hop limit:
307/308 keep the method and body, 301/302/303 continue as GET without a body
(HEAD stays HEAD); the plugin's Authorization header does not follow a
redirect to another host, and credentials are chosen again for each host
(see `_credentials`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vivified.core.egress._addresses import AddressPolicy, Resolver
from vivified.core.egress._allowlist import Allowlist
from vivified.core.egress._client import HttpClient, UpstreamResponse
from vivified.core.egress._config import EgressConfig
from vivified.core.egress._credentials import Credentials, InjectedCredentials
from vivified.core.egress._errors import denied, upstream_failed
from vivified.core.egress._headers import (
    Headers,
    request_headers,
    with_credentials,
    without_authorization,
)
from vivified.core.egress._url import EgressUrl, parse_url, redirect_url
from vivified.core.egress._wire import Steps
from vivified.core.errors import Unavailable
from vivified.manifest.v1.manifest_pb2 import InjectedCredential

_log = logging.getLogger(__name__)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
Note = Callable[..., None]
"""Adds facts to the call's audit record: note(host=..., address=...)."""


@dataclass(frozen=True)
class Caller:
    """The plugin a fetch is made for, with its own approved allowlist."""

    plugin_id: str
    allowlist: Allowlist
    report_only: bool = False
    injected: tuple[InjectedCredential, ...] = ()
    """The credentials its manifest has the core inject."""


@dataclass(frozen=True)
class Outgoing:
    method: str
    url: str
    headers: Sequence[tuple[str, str]]
    body: bytes


class Fetcher:
    def __init__(
        self,
        *,
        config: EgressConfig,
        policy: AddressPolicy,
        resolver: Resolver,
        client: HttpClient,
        credentials: Credentials,
        injected: InjectedCredentials | None = None,
    ) -> None:
        self._config = config
        self.policy = policy
        """Replaced (never mutated) when the core learns its bound ports."""
        self._resolver = resolver
        self._client = client
        self._credentials = credentials
        self._injected = injected or InjectedCredentials()

    def _admit(self, caller: Caller, url: EgressUrl, hop: int, note: Note) -> None:
        if caller.allowlist.admits(url.host):
            return
        if caller.report_only:
            note(would_deny="host_not_allowed")
            _log.warning(
                "egress report-only: %s fetched %s, which its allowlist does not admit", caller.plugin_id, url.host
            )
            return
        raise denied(
            f"{url.host} is not on this plugin's egress allowlist", "host_not_allowed", host=url.host, hop=str(hop)
        )

    async def _addresses(self, url: EgressUrl, steps: Steps) -> list[str]:
        if url.ip is not None:
            return [str(url.ip)]
        try:
            found = await steps.run(
                self._resolver(url.host, url.port), limit=self._config.connect_timeout_seconds, which="connect"
            )
        except Unavailable:
            raise upstream_failed(f"could not resolve {url.host}", "dns_failed") from None
        # Checked, then used as is: the connection never resolves the name again.
        return self.policy.check([str(a) for a in found], url.port)

    async def _credential_headers(self, caller: Caller, url: EgressUrl, note: Note) -> list[tuple[str, str]]:
        found = self._credentials.headers_for(caller.plugin_id, url.host)
        if url.scheme == "https":
            found += await self._injected.headers_for(caller.plugin_id, caller.injected, url.host)
        if found and url.scheme != "https":
            note(credential="withheld_plaintext")
            return []
        if found:
            note(credential=",".join(name for name, _ in found))
        return found

    async def open(
        self, caller: Caller, request: Outgoing, steps: Steps, max_body: int, note: Note
    ) -> UpstreamResponse:
        """The final response of the redirect chain, head read, body not yet."""
        method, text, body = request.method, request.url, request.body
        headers: Headers = request_headers(request.headers)
        hop, previous_host = 0, ""
        while True:
            url = parse_url(text, allowed_ports=caller.allowlist.ports, allow_ranges=self._config.allow_ranges)
            if previous_host and url.host != previous_host:
                headers = without_authorization(headers)
            note(host=url.host, port=str(url.port), hops=str(hop))
            self._admit(caller, url, hop, note)
            addresses = await self._addresses(url, steps)
            sent = with_credentials(headers, await self._credential_headers(caller, url, note))
            response = await self._client.send(url, addresses, method, sent, body, steps, max_body)
            note(address=response.address, status=str(response.head.status))
            location = response.head.values("location")
            if response.head.status not in REDIRECTS or not location:
                return response
            response.close()
            if hop == self._config.max_redirects:
                raise denied(f"more than {self._config.max_redirects} redirects", "too_many_redirects", hop=str(hop))
            text, previous_host, hop = redirect_url(url, location[0]), url.host, hop + 1
            if response.head.status in (301, 302, 303) and method != "HEAD":
                method, body = "GET", b""
                headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
