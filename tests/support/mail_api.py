"""A JSON email API on loopback over HTTPS (a test CA's certificate for
127.0.0.1 and `MAIL_API_HOST`), in the test's event loop: it records each
request (headers and JSON body) and answers from a script of statuses
(200 with `{"id": ...}` when the script is empty)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from support.email_gateway import _tls

MAIL_API_HOST = "mail-api.example.com"
OTHER_HOST = "elsewhere.example.com"


def mail_api_tls(directory: pathlib.Path) -> tuple[ssl.SSLContext, str]:
    """The API server's TLS context (127.0.0.1, MAIL_API_HOST, OTHER_HOST) and its CA's PEM."""
    return _tls(directory, MAIL_API_HOST, OTHER_HOST)


@dataclass
class ApiRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class MailApi:
    context: ssl.SSLContext
    requests: list[ApiRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Answers to give next, in order; 200 when empty."""
    redirects: dict[str, str] = field(default_factory=dict)
    """path → Location answered with 307."""
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> MailApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {n.lower(): v for n, v in (line.split(": ", 1) for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(ApiRequest(method, path, headers, json.loads(body or b"{}")))
            if path in self.redirects:
                writer.write(
                    f"HTTP/1.1 307 X\r\nLocation: {self.redirects[path]}\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                return
            status = self.statuses.pop(0) if self.statuses else 200
            answer = json.dumps({"id": f"api-{len(self.requests)}"} if status < 300 else {"error": "no"}).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
