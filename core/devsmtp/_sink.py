"""A local SMTP sink for the development profile: a real SMTP server
(aiosmtpd) on loopback that accepts every message and writes it, as
received, to `<outbox>/<n>.eml` (n counting up from 1). It relays nothing.

    >>> sink = SmtpSink(data_dir / "outbox")  # doctest: +SKIP
    >>> port = await sink.start()             # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_log = logging.getLogger("vivified.devsmtp")
_NUMBERED = re.compile(r"([0-9]+)\.eml")


class _Outbox:
    """aiosmtpd handler: each accepted message becomes the next numbered file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        taken = [int(m.group(1)) for p in directory.iterdir() if (m := _NUMBERED.fullmatch(p.name))]
        self._next = max(taken, default=0) + 1

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        number, self._next = self._next, self._next + 1
        path = self.directory / f"{number}.eml"
        tmp = path.with_suffix(".tmp")
        # Written whole, then renamed: a reader never sees half a message.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        tmp.replace(path)
        _log.info("development SMTP sink: message %d (%d bytes) written to %s", number, len(content), path)
        return "250 OK: written to the development outbox"


class SmtpSink:
    """The sink's server on `host` (loopback), port chosen by the OS unless given."""

    def __init__(self, outbox: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.outbox = outbox
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the SMTP sink is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        handler = _Outbox(self.outbox)

        def protocol() -> Any:
            return SMTP(handler, hostname="vivified-dev-sink", ident="Vivified development SMTP sink")

        self._server = await asyncio.get_running_loop().create_server(protocol, self.host, self._port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
