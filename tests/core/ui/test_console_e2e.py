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

import pathlib
import shutil
import time
from typing import Any

import grpc
import pytest
from playwright.async_api import Page, async_playwright, expect

from support.clients import audit_rows
from support.console import ADMIN_PASSWORD, CHROMIUM, ROOT, SHOTS, VIEWER_PASSWORD, Console
from support.lane import COMMUNICATION, RecordingStore, started_plugin, write_manifest
from support.users import code_at
from vivified.communication.v1 import communication_pb2
from vivified.core.rest import CONSOLE_CSP
from vivified.plugins.example_echo import EchoCommunicationPlugin
from vivified.sdk import UnavailableError

pytestmark = [pytest.mark.e2e]

ADMIN = "/vivified.admin.v1.PluginAdminService/"
WHOAMI = "/vivified.identity.v1.AuthService/WhoAmI"
SEND = f"{COMMUNICATION}/SendMessage"


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
    status, viewer, _ = console.call("GET", "/v1/auth:whoAmI", token=console.viewer_token())
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
                args=console.chromium_args,
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
    token = console.viewer_token()
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
