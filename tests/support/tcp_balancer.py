"""A loopback TCP (L4) load balancer in front of several core replicas: each
new connection goes to the next backend in turn, or to the one a test routes
it to; a backend refusing connections (killed) is skipped, as a balancer's
health check would. TLS passes through: the cores terminate mTLS.

`landed` records which backend (by index) each accepted connection reached."""

from __future__ import annotations

import asyncio

from support.tcp_proxy import TcpProxy


class TcpBalancer(TcpProxy):
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        super().__init__(*backends[0])
        self._backends = backends
        self._next = 0
        self._route: int | None = None
        self.landed: list[int] = []

    def route(self, index: int | None) -> None:
        """Send new connections to backend `index` (None: round robin again)."""
        self._route = index

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        first = self._route if self._route is not None else self._next
        self._next = (self._next + 1) % len(self._backends)
        problem: OSError | None = None
        for step in range(len(self._backends)):
            index = (first + step) % len(self._backends)
            try:
                opened = await asyncio.open_connection(*self._backends[index])
            except OSError as exc:
                problem = exc
                continue
            self.landed.append(index)
            return opened
        raise problem or OSError("no backend")
