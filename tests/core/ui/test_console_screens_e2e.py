"""The console's admin screens end to end: the real core, the real Envoy serving
the built console and the REST bridge on one origin, Debian's Chromium driven by
Playwright. A new admin enrols TOTP from the QR screen and signs in; approves the
echo plugin from its uploaded manifest (the file's sha256 and requested traits
shown, then the join token once); creates and disables a user and resets
another user's MFA (confirmed with a reason; they must enrol again); creates an API
key (shown once) and revokes it; sets a plugin setting from the form its config
schema makes (the secret field write-only) and overrides a core setting, each with
a reason; finds the approval in the audit view and verifies the chain (intact,
then, after the test edits the MFA reset's record in the database under the
running core, broken with that record's seq named); replays a dead letter from
the events screen (the subscriber receives it again).
Each refusal on the way (a manifest the contract does not know, a duplicate user,
a mistyped setting) shows the server's ErrorInfo reason and keeps the form. Each
write has its one audit record. A viewer sees none of these screens.
Screenshots of each screen go to build/console-screenshots/ (git-ignored)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import time
from collections.abc import Iterator

import pytest
from playwright.async_api import Page, async_playwright, expect

from support.clients import approve, audit_rows
from support.console import CHROMIUM, ROOT, SHOTS, VIEWER_PASSWORD, VIEWER_USERNAME, Console
from support.events import MESSAGE_SEND_REQUESTED, Inbox, event_plugin
from support.lane import write_manifest
from support.processes import CoreProcess, core_running, run_cli
from support.users import code_at, create_admin
from support.waiting import until
from vivified.core.audit import audit_table
from vivified.core.db import plain_engine
from vivified.core.manifest import load_manifest_bytes
from vivified.events.v1.canonical_pb2 import MessageSendRequested

pytestmark = [pytest.mark.e2e]

MANIFEST = ROOT / "plugins" / "example_echo" / "manifest.yaml"
SCREENS_ADMIN = "screens-admin"
SCREENS_PASSWORD = "CANARY-console-screens-pw-3e9a41"
PLUGINS = "/vivified.admin.v1.PluginAdminService/"
USERS = "/vivified.identity.v1.UserAdminService/"
KEYS = "/vivified.identity.v1.ApiKeyService/"
CONFIG = "/vivified.config.v1.ConfigService/"
EVENTS = "/vivified.admin.v1.EventAdminService/"
SUBSCRIPTION = "dlq-sub/sender"
MFA_USER = "screens-mfa"
MFA_RESET_REASON = "lost phone; identity checked by call-back"
# "<status>: <message> (<REASON>…": what describeError shows for a server refusal.
REFUSAL = re.compile(r"^\d{3}: .+\([A-Z][A-Z_]+")


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    """This module's core redelivers fast (1 s ack timeout, 3 attempts), so a dead letter is made in seconds."""
    data_dir = tmp_path_factory.mktemp("core") / "data"
    flags = ("--heartbeat-interval", "1", "--leaf-ttl", "600", "--event-ack-timeout", "1", "--event-max-attempts", "3")
    with core_running(data_dir, *flags) as running:
        yield running


def _audited(console: Console, action: str, actor: str, *refusals: str, **match: str) -> None:
    """The actor's records of the action: one success (matching `match`) and one refusal per reason given."""
    rows = audit_rows(console.core, action=action, actor=actor)
    shown = [(r.decision, r.outcome, r.reason, r.resource) for r in rows]
    done = [r for r in rows if r.outcome == "OK"]
    assert len(done) == 1 and done[0].decision == "allow", (action, shown)
    assert sorted(r.reason for r in rows if r.outcome != "OK") == sorted(refusals), (action, shown)
    for key, value in match.items():
        assert getattr(done[0], key) == value, (action, key, shown)


def _enrolled_user(console: Console, token: str) -> None:
    """A phi_handler (its role requires MFA) who enrolled TOTP over REST: the one whose MFA the console resets."""
    status, created, _ = console.call(
        "POST", "/v1/users", {"username": MFA_USER, "password": SCREENS_PASSWORD, "roles": ["phi_handler"]}, token=token
    )
    assert status == 200, created
    first = _login(console, MFA_USER)
    assert first["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED", first
    status, enrol, _ = console.call("POST", "/v1/auth:enrollMfa", {"mfaToken": first["mfaToken"]})
    assert status == 200, enrol
    status, confirmed, _ = console.call(
        "POST", "/v1/auth:confirmMfa", {"mfaToken": first["mfaToken"], "code": code_at(enrol["secret"], time.time())}
    )
    assert status == 200, confirmed


def _login(console: Console, username: str) -> dict[str, str]:
    status, body, _ = console.call("POST", "/v1/auth:login", {"username": username, "password": SCREENS_PASSWORD})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def _enrol_and_sign_in(page: Page, console: Console) -> str:
    """Password, then the enrolment screen (QR and secret), a code, the backup codes, the dashboard."""
    await page.goto(console.url)
    await page.get_by_label("Username").fill(SCREENS_ADMIN)
    await page.get_by_label("Password").fill(SCREENS_PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Set up an authenticator")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the authenticator secret")
    await expect(qr).to_be_visible()
    # A QR code's modules: the path has many dark cells, a viewBox of 21 + 4k modules plus the border.
    drawn = await qr.locator("path").get_attribute("d")
    assert drawn is not None and drawn.count("M") > 100, drawn
    await expect(page.get_by_label("Authenticator code")).to_be_focused()
    secret = (await page.get_by_test_id("mfa-secret").inner_text()).strip()
    await page.screenshot(path=SHOTS / "mfa-enrol.png")
    # A wrong code: the server's reason, and the enrolment step stays.
    await page.keyboard.type("000000" if code_at(secret, time.time()) != "000000" else "111111")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(REFUSAL)
    await expect(qr).to_be_visible()
    await page.get_by_label("Authenticator code").fill(code_at(secret, time.time()))
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("backup-codes").locator("li")).not_to_have_count(0)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await expect(page.get_by_test_id("recent-denials")).to_be_visible()
    await expect(page.get_by_test_id("event-backlog")).to_contain_text("undelivered in")
    return secret


async def _approve(page: Page, tmp: pathlib.Path) -> None:
    await page.get_by_role("button", name="Plugins", exact=True).click()
    upload = page.get_by_label("Manifest file (YAML or JSON)")
    bad = tmp / "bad.yaml"
    bad.write_text("id: bad\nbogus_key: 1\n")
    await upload.set_input_files(bad)
    await expect(page.get_by_role("alert")).to_contain_text("The manifest cannot be read")
    await expect(page.get_by_role("alert")).to_contain_text("bogus_key")
    await upload.set_input_files(MANIFEST)
    await expect(page.get_by_test_id("approve-id")).to_have_text("example-echo 0.1.0")
    await expect(page.get_by_test_id("approve-file-sha")).to_have_text(
        hashlib.sha256(MANIFEST.read_bytes()).hexdigest()
    )
    await expect(page.get_by_test_id("approve-requested")).to_have_text("communication_plugin")
    await expect(page.get_by_role("checkbox", name="communication_plugin")).to_be_checked()
    await page.screenshot(path=SHOTS / "plugins-approve.png")
    await page.get_by_role("button", name="Approve example-echo").click()
    await expect(page.get_by_test_id("join-token")).to_be_focused()
    assert len((await page.get_by_test_id("join-token").inner_text()).strip()) > 20
    await expect(page.get_by_test_id("approved-sha")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    await expect(page.get_by_test_id("approved-traits")).to_have_text("communication_plugin")
    await expect(page.locator("tr[data-plugin='example-echo']")).to_be_visible()
    # Approving the same plugin again (no replace): the server refuses with its reason.
    again = tmp / "again.yaml"
    again.write_bytes(MANIFEST.read_bytes())
    await upload.set_input_files(again)
    await page.get_by_role("button", name="Approve example-echo").click()
    await expect(page.get_by_role("alert")).to_have_text(REFUSAL)
    await expect(page.get_by_role("alert")).to_contain_text("PLUGIN_ALREADY_EXISTS")
    await page.screenshot(path=SHOTS / "plugins-approved.png")


async def _users(page: Page) -> None:
    await page.get_by_role("button", name="Users", exact=True).click()
    await expect(page.locator(f"tr[data-user='{VIEWER_USERNAME}']")).to_be_visible()
    # A duplicate username: refused with the server's reason, and nothing typed is lost.
    await page.get_by_label("New username").fill(VIEWER_USERNAME)
    await page.get_by_label("Initial password").fill("CANARY-screens-user-pw-77c1d0")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_test_id("users-result")).to_have_text(REFUSAL)
    await expect(page.get_by_test_id("users-result")).to_contain_text("USER_ALREADY_EXISTS")
    await expect(page.get_by_label("New username")).to_have_value(VIEWER_USERNAME)
    await expect(page.get_by_label("Initial password")).to_have_value("CANARY-screens-user-pw-77c1d0")
    await page.get_by_label("New username").fill("screens-user")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_test_id("users-result")).to_have_text("Created screens-user.")
    row = page.locator("tr[data-user='screens-user']")
    await expect(row.get_by_test_id("user-state")).not_to_have_text("disabled")
    await row.get_by_role("button", name="Disable screens-user").click()
    await expect(page.get_by_test_id("users-result")).to_have_text("screens-user is disabled.")
    await expect(row.get_by_test_id("user-state")).to_have_text("disabled")
    await page.screenshot(path=SHOTS / "users.png")

    # Reset MFA: asked to confirm with a reason; the user's MFA shows none afterwards.
    mfa_row = page.locator(f"tr[data-user='{MFA_USER}']")
    await expect(mfa_row.get_by_test_id("user-mfa")).to_have_text("enrolled")
    # Offered only for enrolled users: the new user has none to reset.
    await expect(row.get_by_role("button", name="Reset MFA of screens-user")).to_have_count(0)
    await mfa_row.get_by_role("button", name=f"Reset MFA of {MFA_USER}").click()
    await expect(page.get_by_role("heading", name=f"Reset MFA of {MFA_USER}")).to_be_visible()
    await expect(page.get_by_label("Reason (recorded in the audit log)")).to_be_focused()
    await page.keyboard.type(MFA_RESET_REASON)
    await page.screenshot(path=SHOTS / "users-reset-mfa-confirm.png")
    await page.get_by_role("button", name="Reset MFA", exact=True).click()
    await expect(page.get_by_test_id("users-result")).to_have_text(
        f"{MFA_USER}'s MFA is reset and their sessions ended."
    )
    await expect(mfa_row.get_by_test_id("user-mfa")).to_have_text("none")
    await expect(page.get_by_role("heading", name=f"Reset MFA of {MFA_USER}")).to_have_count(0)
    await page.screenshot(path=SHOTS / "users-reset-mfa-done.png")


async def _api_keys(page: Page) -> None:
    await page.get_by_role("button", name="API keys", exact=True).click()
    await page.get_by_label("Key name").fill("screens-key")
    await page.get_by_role("checkbox", name="plugin_manager").check()
    await page.get_by_role("button", name="Create key").click()
    shown = page.get_by_test_id("new-key")
    await expect(shown).to_be_visible()
    key = (await shown.locator("code").inner_text()).strip()
    assert key.startswith("vk_"), key
    await page.screenshot(path=SHOTS / "api-key-created.png")
    await page.get_by_role("button", name="I have stored it").click()
    await expect(shown).to_have_count(0)
    await expect(page.get_by_text(key)).to_have_count(0)  # shown once: gone from the page
    row = page.locator("tr[data-key='screens-key']")
    await expect(row).to_contain_text("plugin_manager")
    await row.get_by_role("button", name="Revoke screens-key").click()
    await expect(row).to_contain_text("revoked")
    await page.screenshot(path=SHOTS / "api-keys.png")


async def _config(page: Page) -> None:
    await page.get_by_role("button", name="Configuration", exact=True).click()
    # A plugin's settings, a form from its manifest's config schema; the secret is write-only.
    await page.get_by_label("Plugin", exact=True).select_option("cfg-plugin")
    host = page.locator("form[data-config='host']")
    await expect(host.get_by_label("host", exact=True)).to_have_value("localhost")
    secret = page.locator("form[data-config='password']")
    await expect(secret.get_by_label("password — secret, write-only", exact=True)).to_have_attribute("type", "password")
    await expect(secret.get_by_label("password — secret, write-only", exact=True)).to_have_value("")
    await host.get_by_label("host", exact=True).fill("relay.example.com")
    await host.get_by_label("Reason for host").fill("console test: new relay")
    await host.get_by_role("button", name="Save host").click()
    await expect(page.get_by_text("host saved.")).to_be_visible()
    await expect(page.locator("form[data-config='host']").get_by_label("host", exact=True)).to_have_value(
        "relay.example.com"
    )
    await expect(page.get_by_role("table", name="History of cfg-plugin's settings")).to_contain_text(
        "console test: new relay"
    )
    row = page.locator("tr[data-setting='event_max_attempts']")
    await row.get_by_role("button", name="Override event_max_attempts").click()
    await page.get_by_label("Value").fill("many")
    await page.get_by_label("Reason (recorded with the change)").fill("console test: more tries")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("core-setting-result")).to_have_text(REFUSAL)
    await expect(page.get_by_test_id("core-setting-result")).to_contain_text("CONFIG_INVALID")
    await expect(page.get_by_label("Value")).to_have_value("many")  # the form stays as typed
    await expect(page.get_by_label("Reason (recorded with the change)")).to_have_value("console test: more tries")
    await page.get_by_label("Value").fill("7")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("core-setting-result")).to_have_text("event_max_attempts is now 7.")
    await expect(row).to_contain_text("console test: more tries")
    await page.screenshot(path=SHOTS / "config.png")


async def _audit_and_events(page: Page, console: Console) -> None:
    await page.get_by_role("button", name="Audit", exact=True).click()
    await page.get_by_label("Action (gRPC method)").fill(PLUGINS + "ApprovePlugin")
    await page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("audit-records").locator("tbody tr")
    # The console's approval and its refused second one (allowed by policy, then refused by the registry).
    await expect(rows.filter(has_text="plugin/example-echo")).to_have_count(2)
    await page.get_by_role("button", name="Verify the chain").click()
    await expect(page.get_by_test_id("audit-verify")).to_have_text(re.compile(r"^Intact: \d+ records verified\.$"))
    await page.screenshot(path=SHOTS / "audit.png")

    # Someone with the database edits the MFA reset's reason under the running core:
    # verification in the console names that record's seq as the first bad one.
    [reset] = audit_rows(console.core, action=USERS + "ResetUserMfa", outcome="OK")
    assert json.loads(reset.detail)["change_reason"] == MFA_RESET_REASON
    engine = plain_engine(f"sqlite+pysqlite:///{console.core.data_dir / 'vivified.db'}")
    try:
        with engine.begin() as conn:
            edited = json.dumps({**json.loads(reset.detail), "change_reason": "routine"}, separators=(",", ":"))
            conn.execute(audit_table.update().where(audit_table.c.seq == reset.seq).values(detail=edited))
    finally:
        engine.dispose()
    await page.get_by_role("button", name="Verify the chain").click()
    await expect(page.get_by_test_id("audit-verify")).to_contain_text(f"Broken: first bad record is seq {reset.seq} (")
    # The record it names is the one found by its action in the same view.
    await page.get_by_label("Action (gRPC method)").fill(USERS + "ResetUserMfa")
    await page.get_by_role("button", name="Search").click()
    await expect(rows.filter(has_text=reset.resource)).to_have_count(1)
    await expect(page.locator(f"tr[data-seq='{reset.seq}']")).to_be_visible()
    await page.screenshot(path=SHOTS / "audit-broken.png")
    await page.get_by_role("button", name="Events", exact=True).click()
    row = page.locator(f"tr[data-subscription='{SUBSCRIPTION}']")
    await row.get_by_role("button", name=f"Dead letters of {SUBSCRIPTION}").click()
    letters = page.get_by_test_id("dead-letters").locator("tbody tr")
    await expect(letters).to_have_count(1)
    await expect(letters).to_contain_text(MESSAGE_SEND_REQUESTED)
    await letters.get_by_role("button", name="Replay").click()
    await expect(page.get_by_test_id("events-result")).to_have_text(f"Replayed 1 dead letter of {SUBSCRIPTION}.")
    await expect(page.get_by_test_id("no-dead-letters")).to_be_visible()
    await page.screenshot(path=SHOTS / "events.png")


async def _browse(console: Console, tmp_path: pathlib.Path) -> None:
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=console.chromium_args)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await _enrol_and_sign_in(page, console)
            await _approve(page, tmp_path)
            await _users(page)
            await _api_keys(page)
            await _config(page)
            await _audit_and_events(page, console)
            assert await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]
            await context.close()

            viewer = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await viewer.new_page()
            await page.goto(console.url)
            await page.get_by_label("Username").fill(VIEWER_USERNAME)
            await page.get_by_label("Password").fill(VIEWER_PASSWORD)
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            await expect(page.get_by_role("heading", name="Recent denials")).to_have_count(0)
            for screen in ("Plugins", "Users", "Audit", "Configuration", "Events"):
                await expect(page.get_by_role("button", name=screen, exact=True)).to_have_count(0)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await viewer.close()
        finally:
            await browser.close()


@pytest.mark.asyncio
async def test_admin_drives_every_screen_and_each_write_is_audited(
    console: Console, admin: dict[str, str], tmp_path: pathlib.Path
) -> None:
    assert pathlib.Path(CHROMIUM).is_file(), "apt-get install -y chromium (tools/setup.sh does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    create_admin(console.core, SCREENS_ADMIN, SCREENS_PASSWORD, tmp_path)
    # A plugin with a config schema, for the configuration screen's plugin settings.
    config = [
        {"name": "host", "type": "CONFIG_FIELD_TYPE_STRING", "default_value": "localhost"},
        {"name": "password", "type": "CONFIG_FIELD_TYPE_SECRET"},
    ]
    await approve(console.core, load_manifest_bytes(write_manifest(tmp_path, "cfg-plugin", config=config).read_bytes()))
    _enrolled_user(console, admin["token"])
    # A dead letter to replay: a subscriber whose handler fails every attempt.
    publisher = await event_plugin(console.core, tmp_path, "dlq-pub", publishes=[MESSAGE_SEND_REQUESTED])
    subscriber = await event_plugin(console.core, tmp_path, "dlq-sub", subscribes=[MESSAGE_SEND_REQUESTED])
    try:
        inbox = Inbox(failing=True)
        await subscriber.subscribe("sender", {MessageSendRequested: inbox}).opened()
        await publisher.publish(MessageSendRequested(message_id="poison"), event_id="poison")
        await until(lambda: len(inbox.received) >= 3, 20, "three failed attempts")
        inbox.failing = False

        def dead_lettered() -> bool:
            listed = run_cli(console.core, "events", "--json", "dlq", "list", SUBSCRIPTION)
            return listed.returncode == 0 and len(json.loads(listed.stdout)["dead_letters"]) == 1

        await until(dead_lettered, 20, "the dead letter")
        await _browse(console, tmp_path)
        # The replay reached the subscriber again, as a first attempt.
        await until(lambda: inbox.event_ids().count("poison") == 4, 20, "the replayed delivery")
        assert inbox.received[-1][1].attempt == 1
    finally:
        await publisher.stop()
        await subscriber.stop()

    # Each write through the console: its one allow record, by the admin who signed in there.
    status, listed, _ = console.call("GET", "/v1/users?page_size=200", token=admin["token"])
    assert status == 200, listed
    ids = {u["username"]: u["userId"] for u in listed["users"]}
    me = f"user:{ids[SCREENS_ADMIN]}"
    _audited(console, PLUGINS + "ApprovePlugin", me, "PLUGIN_ALREADY_EXISTS", resource="plugin/example-echo")
    _audited(console, USERS + "CreateUser", me, "USER_ALREADY_EXISTS", resource=f"user/{ids['screens-user']}")
    _audited(console, USERS + "DisableUser", me, resource=f"user/{ids['screens-user']}")
    _audited(console, USERS + "ResetUserMfa", me, resource=f"user/{ids[MFA_USER]}")
    # The reset user must enrol a new authenticator at the next sign-in.
    assert _login(console, MFA_USER)["step"] == "LOGIN_STEP_MFA_ENROLLMENT_REQUIRED"
    _audited(console, KEYS + "CreateApiKey", me)
    _audited(console, KEYS + "RevokeApiKey", me)
    _audited(console, EVENTS + "ReplayDeadLetters", me, resource=f"subscription/{SUBSCRIPTION}")
    _audited(console, CONFIG + "SetPluginConfigValue", me, resource="plugin/cfg-plugin")
    _audited(console, CONFIG + "SetCoreSetting", me, "CONFIG_INVALID", resource="core-setting/event_max_attempts")
