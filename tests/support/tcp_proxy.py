"""A loopback TCP proxy that can stop forwarding (a network partition) and heal.

In blackhole mode it accepts connections and reads what it is sent but forwards
nothing in either direction, so the client sees a silent peer: the case a
timeout, not a refused connection, must catch.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._healed = asyncio.Event()
        self._healed.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        self._healed.clear()

    def heal(self) -> None:
        self._healed.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            for stream in (writer, upstream_writer):
                stream.close()
            if task is not None:
                self._tasks.discard(task)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self._target)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            # A blackholed chunk is held until the partition heals; what a client
            # sent during it is then delivered late (as TCP would retransmit it).
            await self._healed.wait()
            writer.write(chunk)
            await writer.drain()
        writer.close()
