"""The console's Live activity screen end to end: the real core, the real
Envoy serving the built console and the REST bridge on one origin, Debian's
Chromium driven by Playwright. An admin (password + TOTP) opens Live
activity, the screen reads WatchAuditRecords as a stream through the bridge,
and a call made elsewhere (another client, over REST) appears on the screen
while it is open; the method-prefix filter narrows the feed. A viewer, whom
WhoAmI does not allow the method, has no Live activity entry. The watch is
audited once per subscription. Screenshots go to build/console-screenshots/."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import pathlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import async_playwright, expect

from support.clients import audit_rows
from support.processes import CoreProcess, run_cli
from support.users import code_at, create_admin
from vivified.core.rest import EnvoyProcess, find_envoy, start_envoy

pytestmark = [pytest.mark.e2e]

ROOT = pathlib.Path(__file__).resolve().parents[3]
DIST = ROOT / "core" / "ui" / "dist"
SHOTS = ROOT / "build" / "console-screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
ADMIN_PASSWORD = "CANARY-live-admin-pw-0b6e3f"
VIEWER_PASSWORD = "CANARY-live-viewer-pw-94c2d7"
WATCH = "/vivified.admin.v1.AuditQueryService/WatchAuditRecords"
LIST_USERS = "/vivified.identity.v1.UserAdminService/ListUsers"


@dataclass
class Bridge:
    core: CoreProcess
    envoy: EnvoyProcess
    port: int
    tls: ssl.SSLContext
    spki: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def call(self, method: str, path: str, body: object = None, *, token: str = "") -> tuple[int, Any]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            connection.request(
                method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def bridge(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    assert (DIST / "index.html").is_file(), "build the console first: tools/setup.sh runs npm run build in core/ui"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    out = tmp_path_factory.mktemp("rest")
    made = run_cli(
        core, "rest", "config", "--listen", f"127.0.0.1:{port}", "--out", str(out), "--console-dir", str(DIST), "--json"
    )
    assert made.returncode == 0, made.stderr + made.stdout
    config = json.loads(made.stdout)
    envoy_binary = find_envoy()
    assert envoy_binary is not None
    envoy = start_envoy(envoy_binary, pathlib.Path(config["config"]), out / "envoy.log", listen=("127.0.0.1", port))
    try:
        leaf = x509.load_pem_x509_certificate(pathlib.Path(config["certificate"]).read_bytes())
        spki = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tls = ssl.create_default_context(cafile=str(core.operator_dir / "ca.crt"))
        yield Bridge(core, envoy, port, tls, base64.b64encode(hashlib.sha256(spki).digest()).decode())
    finally:
        envoy.stop()


@pytest.fixture(scope="module")
def admin(bridge: Bridge, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An admin with TOTP enrolled over REST, and a viewer."""
    create_admin(bridge.core, "live-admin", ADMIN_PASSWORD, tmp_path_factory.mktemp("admin"))
    status, first = bridge.call("POST", "/v1/auth:login", {"username": "live-admin", "password": ADMIN_PASSWORD})
    assert status == 200 and first["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED", first
    status, enrol = bridge.call("POST", "/v1/auth:enrollMfa", {"mfaToken": first["mfaToken"]})
    assert status == 200, enrol
    status, confirmed = bridge.call(
        "POST", "/v1/auth:confirmMfa", {"mfaToken": first["mfaToken"], "code": code_at(enrol["secret"], time.time())}
    )
    assert status == 200, confirmed
    token = confirmed["tokens"]["accessToken"]
    status, created = bridge.call(
        "POST", "/v1/users", {"username": "live-viewer", "password": VIEWER_PASSWORD, "roles": ["viewer"]}, token=token
    )
    assert status == 200, created
    return {"secret": enrol["secret"], "token": token}


@pytest.mark.asyncio
async def test_admin_sees_a_record_appear_live_and_viewer_has_no_live_screen(
    bridge: Bridge, admin: dict[str, str]
) -> None:
    assert pathlib.Path(CHROMIUM).is_file(), "apt-get install -y chromium (tools/setup.sh does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    watches_before = len(audit_rows(bridge.core, action=WATCH))
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={bridge.spki}"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await page.goto(bridge.url)
            await page.get_by_label("Username").fill("live-admin")
            await page.get_by_label("Password").fill(ADMIN_PASSWORD)
            await page.keyboard.press("Enter")
            # The enrolment spent this time step's code; the next step's is accepted.
            await page.get_by_label("Authenticator code").fill(code_at(admin["secret"], time.time() + 30))
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

            await page.get_by_role("button", name="Live activity").click()
            await expect(page.get_by_test_id("live-state")).to_contain_text("Live")
            # The screen's own watch is the first record it shows: the feed is open.
            await expect(page.locator(f"tr[data-action='{WATCH}']").first).to_be_visible()
            # A call made elsewhere while the screen is open appears on it.
            status, _ = bridge.call("GET", "/v1/users", token=admin["token"])
            assert status == 200
            await expect(page.locator(f"tr[data-action='{LIST_USERS}']")).to_have_count(1, timeout=5000)
            await page.screenshot(path=SHOTS / "live-activity.png")

            # Narrowed to the plugin admin service, a user-admin call no longer shows.
            await page.get_by_label("Method prefix (e.g. /vivified.admin.v1.PluginAdminService/)").fill(
                "/vivified.admin.v1.PluginAdminService/"
            )
            await page.get_by_role("button", name="Apply filters").click()
            await expect(page.get_by_test_id("live-state")).to_contain_text("Live")
            await expect(page.locator("tr[data-action]")).to_have_count(0)
            status, _ = bridge.call("GET", "/v1/users", token=admin["token"])
            status, _ = bridge.call("GET", "/v1/plugins", token=admin["token"])
            assert status == 200
            await expect(
                page.locator("tr[data-action='/vivified.admin.v1.PluginAdminService/ListPlugins']")
            ).to_have_count(1, timeout=5000)
            await expect(page.locator(f"tr[data-action='{LIST_USERS}']")).to_have_count(0)
            await context.close()

            viewer = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await viewer.new_page()
            await page.goto(bridge.url)
            await page.get_by_label("Username").fill("live-viewer")
            await page.get_by_label("Password").fill(VIEWER_PASSWORD)
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await expect(page.get_by_role("button", name="Live activity")).to_have_count(0)
            await viewer.close()
        finally:
            await browser.close()
    # Two subscriptions (before and after the filter change): two records, none per record shown.
    rows = audit_rows(bridge.core, action=WATCH)[watches_before:]
    assert [(r.decision, r.outcome, r.rule_id) for r in rows] == [
        ("allow", "STREAM_OPENED", "user-audit-query"),
        ("allow", "STREAM_OPENED", "user-audit-query"),
    ]
