"""The admin console end to end: the real core, the real Envoy serving the
built console (core/ui/dist) and the REST bridge on one origin, and Debian's
Chromium driven by Playwright (one browser start, `executable_path`; never
`playwright install`). An admin signs in with password and TOTP, disables the
running echo plugin with a reason and sees it disabled, a plugin's call to it
is then refused, and the disable has its one audit record; a viewer signs in
(390 px wide) and sees no admin action, the same request crafted by hand is
refused with 403, the reason and one audit record, and 15 idle minutes (the
page's clock, fast-forwarded) sign them out. Screenshots of each screen
go to build/console-screenshots/ (git-ignored)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import pathlib
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import Page, async_playwright, expect

from support.clients import audit_rows
from support.lane import COMMUNICATION, RecordingStore, started_plugin, write_manifest
from support.processes import CoreProcess, run_cli
from support.users import code_at, create_admin
from vivified.communication.v1 import communication_pb2
from vivified.core.rest import CONSOLE_CSP, EnvoyProcess, find_envoy, start_envoy
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import UnavailableError

pytestmark = [pytest.mark.e2e]

ROOT = pathlib.Path(__file__).resolve().parents[3]
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
ADMIN_PASSWORD = "CANARY-console-admin-pw-51c0e2"
VIEWER_PASSWORD = "CANARY-console-viewer-pw-a7d93b"
ADMIN = "/vivified.admin.v1.PluginAdminService/"
WHOAMI = "/vivified.identity.v1.AuthService/WhoAmI"
SEND = f"{COMMUNICATION}/SendMessage"


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def console(core: CoreProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    assert (DIST / "index.html").is_file(), "build the console first: tools/setup.sh runs npm run build in core/ui"
    port = _free_port()
    out = tmp_path_factory.mktemp("rest")
    made = run_cli(
        core, "rest", "config", "--listen", f"127.0.0.1:{port}", "--out", str(out), "--console-dir", str(DIST), "--json"
    )
    assert made.returncode == 0, made.stderr + made.stdout
    config = json.loads(made.stdout)
    assert config["validated"] and config["console"] == f"https://127.0.0.1:{port}/", config
    envoy_binary = find_envoy()
    assert envoy_binary is not None
    envoy = start_envoy(envoy_binary, pathlib.Path(config["config"]), out / "envoy.log", listen=("127.0.0.1", port))
    ca_file = core.operator_dir / "ca.crt"
    try:
        leaf = x509.load_pem_x509_certificate(pathlib.Path(config["certificate"]).read_bytes())
        spki = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        yield Console(
            core,
            envoy,
            port,
            ssl.create_default_context(cafile=str(ca_file)),
            ca_file,
            base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        )
    finally:
        envoy.stop()


@pytest.fixture(scope="module")
def admin(console: Console, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An admin with TOTP enrolled (over REST); the console then signs in with password and a code."""
    create_admin(console.core, "console-admin", ADMIN_PASSWORD, tmp_path_factory.mktemp("admin"))
    status, first, _ = console.call("POST", "/v1/auth:login", {"username": "console-admin", "password": ADMIN_PASSWORD})
    assert status == 200 and first["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED", first
    status, enrol, _ = console.call("POST", "/v1/auth:enrollMfa", {"mfaToken": first["mfaToken"]})
    assert status == 200, enrol
    status, confirmed, _ = console.call(
        "POST", "/v1/auth:confirmMfa", {"mfaToken": first["mfaToken"], "code": code_at(enrol["secret"], time.time())}
    )
    assert status == 200, confirmed
    token = confirmed["tokens"]["accessToken"]
    status, created, _ = console.call(
        "POST",
        "/v1/users",
        {"username": "console-viewer", "password": VIEWER_PASSWORD, "roles": ["viewer"]},
        token=token,
    )
    assert status == 200, created
    return {"secret": enrol["secret"], "token": token, "viewer_id": created["user"]["userId"]}


def _viewer_token(console: Console) -> str:
    status, signed_in, _ = console.call(
        "POST", "/v1/auth:login", {"username": "console-viewer", "password": VIEWER_PASSWORD}
    )
    assert status == 200 and signed_in["step"] == "LOGIN_STEP_COMPLETE", signed_in
    return str(signed_in["tokens"]["accessToken"])


def test_console_served_with_strict_csp(console: Console) -> None:
    status, page, headers = console.call("GET", "/")
    assert status == 200 and '<div id="root"></div>' in page
    assert headers["content-security-policy"] == CONSOLE_CSP and "'unsafe-inline'" not in CONSOLE_CSP
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert "<script>" not in page and '<script type="module" crossorigin src="/assets/' in page
    script = page.split('src="', 1)[1].split('"', 1)[0]
    status, _, headers = console.call("GET", script)
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    # The REST routes still reach the core through the transcoder.
    status, body, _ = console.call("GET", "/v1/plugins")
    assert status == 401 and body["details"][0]["reason"] == "IDENTITY_MISSING"


def test_whoami_lists_what_the_policy_allows(console: Console, admin: dict[str, str]) -> None:
    status, me, _ = console.call("GET", "/v1/auth:whoAmI", token=admin["token"])
    assert status == 200 and me["username"] == "console-admin" and "plugin_manager" in me["traits"], me
    assert {ADMIN + "DisablePlugin", ADMIN + "ListPlugins", WHOAMI} <= set(me["allowedMethods"])
    status, viewer, _ = console.call("GET", "/v1/auth:whoAmI", token=_viewer_token(console))
    assert status == 200 and viewer["roles"] == ["viewer"] and viewer["traits"] == ["viewer"], viewer
    assert WHOAMI in viewer["allowedMethods"]
    assert not [m for m in viewer["allowedMethods"] if m.startswith(ADMIN)], viewer
    # Anonymous: no rule lets an anonymous caller ask (no identity: 401); one deny record.
    before = len(audit_rows(console.core, action=WHOAMI, actor="anonymous:127.0.0.1"))
    status, body, _ = console.call("GET", "/v1/auth:whoAmI")
    assert status == 401 and body["details"][0]["reason"] == "IDENTITY_MISSING", body
    assert body["details"][0]["metadata"]["rule_id"] == "default-deny"
    rows = audit_rows(console.core, action=WHOAMI, actor="anonymous:127.0.0.1")
    assert len(rows) == before + 1 and (rows[-1].decision, rows[-1].rule_id) == ("deny", "default-deny")


async def _sign_in(page: Page, console: Console, username: str, password: str) -> None:
    """By keyboard only: the username field has focus, Tab to the password, Enter submits."""
    await page.goto(console.url)
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")


async def _focus_ring(page: Page) -> str:
    return str(await page.evaluate("getComputedStyle(document.activeElement).outlineStyle"))


@pytest.mark.asyncio
async def test_admin_disables_echo_and_viewer_sees_no_admin_actions(
    console: Console, admin: dict[str, str], tmp_path: pathlib.Path
) -> None:
    assert pathlib.Path(CHROMIUM).is_file(), "apt-get install -y chromium (tools/setup.sh does)"
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    core = console.core
    echo = await started_plugin(core, ROOT / "plugins" / "example_echo" / "manifest.yaml", [EchoCommunicationPlugin()])
    runtimes = [echo]
    try:
        caller = await started_plugin(
            core,
            write_manifest(
                tmp_path,
                "console-caller",
                calls=[{"plugin_id": "example-echo", "method": SEND}],
                traits=["storage_plugin"],
            ),
            [RecordingStore()],
        )
        runtimes.append(caller)
        message = communication_pb2.SendMessageRequest(
            message=communication_pb2.CanonicalMessage(
                message_id="c-1", to_address="a@example.com", subject="s", content="c"
            )
        )
        assert (await caller.call("example-echo", message)).message_id == "c-1"  # reachable before the disable
        started = time.monotonic()
        async with async_playwright() as driver:
            # Playwright gives each launch a fresh, temporary --user-data-dir itself (it refuses one in args).
            browser = await driver.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={console.spki}"],
            )
            try:
                await _admin_flow(browser, console, admin)
                await _viewer_flow(browser, console, admin)
            finally:
                await browser.close()
        elapsed = time.monotonic() - started
        print(f"playwright run: {elapsed:.1f} s")

        # The disable's one audit record: the console's admin, allowed by the user plugin-admin rule.
        rows = audit_rows(core, action=ADMIN + "DisablePlugin")
        assert len(rows) == 1, rows
        assert (rows[0].decision, rows[0].rule_id, rows[0].resource) == (
            "allow",
            "user-plugin-admin",
            "plugin/example-echo",
        )
        assert rows[0].actor.startswith("user:usr_")
        # And a plugin's call to the disabled echo plugin is refused by the core.
        with pytest.raises(UnavailableError) as refused:
            await caller.call("example-echo", message)
        assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.UNAVAILABLE, "TARGET_UNAVAILABLE")
        assert "disabled" in refused.value.message
    finally:
        for runtime in reversed(runtimes):
            await runtime.stop("test over")
    for name in (
        "sign-in",
        "mfa",
        "dashboard-admin",
        "plugins",
        "plugins-disabled",
        "signed-out",
        "dashboard-viewer-390",
        "idle-signed-out-390",
    ):
        assert (SHOTS / f"{name}.png").stat().st_size > 1000, name


async def _admin_flow(browser: Any, console: Console, admin: dict[str, str]) -> None:
    context = await browser.new_context(ignore_https_errors=False, viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(console.url)
    await page.screenshot(path=SHOTS / "sign-in.png")
    await _sign_in(page, console, "console-admin", ADMIN_PASSWORD)
    code = page.get_by_label("Authenticator code")
    await expect(code).to_be_focused()
    await page.screenshot(path=SHOTS / "mfa.png")
    # The enrolment spent this time step's code; the next step's is accepted (one step of skew).
    await page.keyboard.type(code_at(admin["secret"], time.time() + 30))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.get_by_test_id("core-health")).to_contain_text("Serving")
    await expect(page.get_by_test_id("by-status")).to_contain_text("active: 2")
    await expect(page.get_by_test_id("by-health")).to_contain_text("healthy: 2")
    await page.screenshot(path=SHOTS / "dashboard-admin.png")

    await page.get_by_role("button", name="Plugins").click()
    row = page.locator("tr[data-plugin='example-echo']")
    await expect(row.get_by_test_id("status")).to_have_text("active")
    await page.screenshot(path=SHOTS / "plugins.png")
    await row.get_by_role("button", name="Disable example-echo").click()
    reason = page.get_by_label("Reason (recorded in the audit log)")
    await expect(reason).to_be_focused()
    await page.keyboard.type("console test: maintenance window")
    await page.keyboard.press("Tab")  # to the Disable button, by keyboard: its focus ring shows
    assert await _focus_ring(page) == "solid"
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("plugin-result")).to_have_text("example-echo is now disabled.")
    await expect(row.get_by_test_id("status")).to_have_text("disabled")
    await expect(row.get_by_role("button", name="Enable example-echo")).to_be_visible()
    await page.screenshot(path=SHOTS / "plugins-disabled.png")
    # Tokens live in memory only.
    stored = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]

    logouts = len(audit_rows(console.core, action="/vivified.identity.v1.AuthService/Logout"))
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("Signed out.")
    await page.screenshot(path=SHOTS / "signed-out.png")
    assert len(audit_rows(console.core, action="/vivified.identity.v1.AuthService/Logout")) == logouts + 1
    await context.close()


async def _viewer_flow(browser: Any, console: Console, admin: dict[str, str]) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await page.clock.install()
    await _sign_in(page, console, "console-viewer", VIEWER_PASSWORD)
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.get_by_text("traits: viewer")).to_be_visible()
    # No admin action anywhere: no plugins screen, no plugin counts, no disable or enable button.
    await expect(page.get_by_role("button", name="Plugins")).to_have_count(0)
    await expect(page.get_by_role("button", name="Disable")).to_have_count(0)
    await expect(page.get_by_test_id("by-status")).to_have_count(0)
    # Usable at 390 px: nothing wider than the viewport.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path=SHOTS / "dashboard-viewer-390.png", full_page=True)

    # The viewer crafts the admin request by hand, from the console's own origin: the server refuses it.
    token = _viewer_token(console)
    reply = await page.evaluate(
        """async (token) => {
            const r = await fetch('/v1/plugins/example-echo:enable', {method: 'POST',
              headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token},
              body: JSON.stringify({reason: 'viewer crafted'})});
            return [r.status, await r.json()];
        }""",
        token,
    )
    status, body = reply
    assert status == 403, body
    info = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert (info[0]["reason"], info[0]["metadata"]["rule_id"]) == ("POLICY_DENIED", "user-plugin-admin"), body
    rows = audit_rows(console.core, action=ADMIN + "EnablePlugin", actor=f"user:{admin['viewer_id']}")
    assert len(rows) == 1 and (rows[0].decision, rows[0].reason) == ("deny", "POLICY_DENIED"), rows

    # Idle logoff: the page's clock (Playwright's, installed before sign-in) runs 15 minutes on without input.
    logout = "/vivified.identity.v1.AuthService/Logout"
    before = len(audit_rows(console.core, action=logout, actor=f"user:{admin['viewer_id']}"))
    await page.clock.fast_forward("15:01")
    await expect(page.get_by_role("status")).to_have_text("Signed out after 15 minutes without activity.")
    await expect(page.get_by_label("Username")).to_be_visible()
    await page.screenshot(path=SHOTS / "idle-signed-out-390.png")
    rows = audit_rows(console.core, action=logout, actor=f"user:{admin['viewer_id']}")
    assert len(rows) == before + 1 and rows[-1].decision == "allow", rows
    await context.close()
