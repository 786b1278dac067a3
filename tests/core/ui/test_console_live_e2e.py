"""The console's Live activity screen end to end: the real core, the real
Envoy serving the built console and the REST bridge on one origin, Debian's
Chromium driven by Playwright. An admin (password + TOTP) opens Live
activity, the screen reads WatchAuditRecords as a stream through the bridge,
and a call made elsewhere (another client, over REST) appears on the screen
while it is open; the method-prefix filter narrows the feed. A viewer, whom
WhoAmI does not allow the method, has no Live activity entry. The watch is
audited once per subscription. Screenshots go to build/console-screenshots/."""

from __future__ import annotations

import pathlib
import time

import pytest
from playwright.async_api import async_playwright, expect

from support.clients import audit_rows
from support.console import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    CHROMIUM,
    SHOTS,
    VIEWER_PASSWORD,
    VIEWER_USERNAME,
    Console,
)
from support.users import code_at

pytestmark = [pytest.mark.e2e]

WATCH = "/vivified.admin.v1.AuditQueryService/WatchAuditRecords"
LIST_USERS = "/vivified.identity.v1.UserAdminService/ListUsers"


@pytest.mark.asyncio
async def test_admin_sees_a_record_appear_live_and_viewer_has_no_live_screen(
    console: Console, admin: dict[str, str]
) -> None:
    assert pathlib.Path(CHROMIUM).is_file(), "apt-get install -y chromium (tools/setup.sh does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    watches_before = len(audit_rows(console.core, action=WATCH))
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=console.chromium_args)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await page.goto(console.url)
            await page.get_by_label("Username").fill(ADMIN_USERNAME)
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
            status, _, _ = console.call("GET", "/v1/users", token=admin["token"])
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
            status, _, _ = console.call("GET", "/v1/users", token=admin["token"])
            status, _, _ = console.call("GET", "/v1/plugins", token=admin["token"])
            assert status == 200
            await expect(
                page.locator("tr[data-action='/vivified.admin.v1.PluginAdminService/ListPlugins']")
            ).to_have_count(1, timeout=5000)
            await expect(page.locator(f"tr[data-action='{LIST_USERS}']")).to_have_count(0)
            await context.close()

            viewer = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await viewer.new_page()
            await page.goto(console.url)
            await page.get_by_label("Username").fill(VIEWER_USERNAME)
            await page.get_by_label("Password").fill(VIEWER_PASSWORD)
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await expect(page.get_by_role("button", name="Live activity")).to_have_count(0)
            await viewer.close()
        finally:
            await browser.close()
    # Two subscriptions (before and after the filter change): two records, none per record shown.
    rows = audit_rows(console.core, action=WATCH)[watches_before:]
    assert [(r.decision, r.outcome, r.rule_id) for r in rows] == [
        ("allow", "STREAM_OPENED", "user-audit-query"),
        ("allow", "STREAM_OPENED", "user-audit-query"),
    ]
