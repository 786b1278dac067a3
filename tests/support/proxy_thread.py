"""Running a TcpProxy on an event loop of its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from support.tcp_proxy import TcpProxy


class ProxyThread:
    """Runs a TcpProxy on an event loop of its own thread,
    so it keeps forwarding while the test's loop blocks (starting a core)."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def port(self) -> int:
        return self.proxy.port

    def blackhole(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.blackhole)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.heal)

    def call(self, function: Callable[[], object]) -> None:
        """Run `function` on the proxy's loop (e.g. re-route a TcpBalancer)."""
        self._loop.call_soon_threadsafe(function)
