"""A loopback TCP load balancer over several core replicas, built on TcpProxy:
each new connection goes to the next target in turn (round robin), skipping
targets that refuse the connection, as an L4 balancer with health checks would."""

from __future__ import annotations

import asyncio
import itertools
import threading

from support.tcp_proxy import TcpProxy


class RoundRobinProxy(TcpProxy):
    def __init__(self, targets: list[tuple[str, int]]) -> None:
        super().__init__(*targets[0])
        self._targets = targets
        self._next = itertools.cycle(range(len(targets)))
        self.accepted: list[int] = []
        """Index of the target each accepted connection went to."""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        upstream = None
        for _ in range(len(self._targets)):
            index = next(self._next)
            try:
                upstream = await asyncio.open_connection(*self._targets[index])
            except OSError:
                continue
            self.accepted.append(index)
            break
        if upstream is None:
            writer.close()
            return
        upstream_reader, upstream_writer = upstream
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
            )
        finally:
            for stream in (writer, upstream_writer):
                stream.close()
            if task is not None:
                self._tasks.discard(task)


class ProxyThread:
    """Runs a TcpProxy (or RoundRobinProxy) on an event loop of its own thread,
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
