"""The admin console's test harness: the REST bridge (real Envoy, serving the
built console) in front of a test module's core, a JSON client for it, and
Debian's Chromium settings. The fixtures over it are in tests/core/ui/conftest.py."""

from __future__ import annotations

import http.client
import json
import pathlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from support.processes import CoreProcess
from vivified.core.rest import EnvoyProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIST = ROOT / "core" / "ui" / "dist"
SHOTS = ROOT / "build" / "console-screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_USERNAME = "console-admin"
VIEWER_USERNAME = "console-viewer"
ADMIN_PASSWORD = "CANARY-console-admin-pw-51c0e2"
VIEWER_PASSWORD = "CANARY-console-viewer-pw-a7d93b"


@dataclass
class Console:
    core: CoreProcess
    envoy: EnvoyProcess
    port: int
    tls: ssl.SSLContext
    ca_file: pathlib.Path
    spki: str
    """base64 SHA-256 of the listener certificate's public key: the one certificate Chromium accepts
    besides its own roots (the core's CA is not in its store)."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def chromium_args(self) -> list[str]:
        return [*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={self.spki}"]

    def call(self, method: str, path: str, body: object = None, *, token: str = "") -> tuple[int, Any, dict[str, str]]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            connection.request(
                method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers
            )
            response = connection.getresponse()
            data = response.read()
            kind = response.getheader("content-type") or ""
            parsed = json.loads(data) if kind.startswith("application/json") else data.decode()
            return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def viewer_token(self) -> str:
        status, signed_in, _ = self.call(
            "POST", "/v1/auth:login", {"username": VIEWER_USERNAME, "password": VIEWER_PASSWORD}
        )
        assert status == 200 and signed_in["step"] == "LOGIN_STEP_COMPLETE", signed_in
        return str(signed_in["tokens"]["accessToken"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
