"""In a real Chromium: connect an Instagram account through the simulator's Business Login, then the
accounts page, a dead token's banner, and the reconnect."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import screenshot
from tests.support.factory import PASSWORD

pytestmark = pytest.mark.browser


def test_connect_an_account_then_lose_and_reconnect_it(sim, live_server, page, factory, app, run_jobs):
    shop = sim.add_account("bloom.studio", name="Bloom Studio", subscribed_fields=())
    boss = factory.user("olga@shop.example", name="Olga Owner", superadmin=True)

    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(boss.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="No Instagram account yet")).to_be_visible()
    page.get_by_role("link", name="Connect Instagram").click()

    expect(page.get_by_role("heading", name="Connect Instagram")).to_be_visible()
    page.get_by_text("Settings for the Meta App Dashboard").click()
    expect(page.get_by_text(f"{live_server.url}/admin/connect/callback")).to_be_visible()
    screenshot(page, "connect-page")

    # Off to "Instagram" (the simulator), which sends the browser back with a code.
    page.get_by_role("button", name="Continue with Instagram").click()
    expect(page.get_by_role("heading", name="Connecting…")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/connect/runs/\d+"))
    screenshot(page, "connect-waiting")
    assert run_jobs() == 1  # the worker's part; the page polls until it is done
    expect(page.get_by_role("heading", name="Connected @bloom.studio")).to_be_visible()
    screenshot(page, "connect-done")
    assert shop.subscribed_fields

    page.get_by_role("link", name="Open the inbox").click()
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(page.locator(".account-current")).to_have_text("@bloom.studio")

    page.get_by_role("link", name="Accounts").click()
    row = page.locator("table.accounts-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("Subscribed")
    expect(row).to_contain_text(re.compile(r"(59|60) days left"))
    screenshot(page, "connect-accounts")

    # The owner changes their Instagram password: the daily check finds the token dead.
    shop.revoke_token()
    runner = app.test_cli_runner()
    assert "reconnect needed" in runner.invoke(args=["accounts", "refresh-tokens"]).output
    page.get_by_role("link", name="Inbox").first.click()
    banner = page.locator("#account-banner")
    expect(banner).to_contain_text("Reconnect needed.")
    screenshot(page, "connect-reconnect-banner")
    page.goto(live_server.url + "/admin/accounts")
    expect(row).to_contain_text("Reconnect needed")
    screenshot(page, "connect-accounts-reconnect")

    page.get_by_role("button", name="Reconnect").click()
    expect(page.get_by_role("heading", name="Connecting…")).to_be_visible()
    run_jobs()
    expect(page.get_by_role("heading", name="Reconnected @bloom.studio")).to_be_visible()
    page.get_by_role("link", name="Open the inbox").click()
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(page.locator("#account-banner")).to_have_count(0)

    # Staff: give a colleague the account.
    ana = factory.user("ana@shop.example", name="Ana Agent")
    page.get_by_role("link", name="Staff").click()
    page.get_by_label("Person").select_option(label="Ana Agent (ana@shop.example)")
    page.get_by_label("Role").select_option("agent")
    page.get_by_role("button", name="Grant").click()
    expect(page.get_by_text("Ana Agent is now agent on @bloom.studio.")).to_be_visible()
    expect(page.locator(f"#staff-{ana.id}")).to_contain_text("@bloom.studio · agent")
    screenshot(page, "connect-staff")


def test_a_cancelled_authorization_explains_itself(sim, live_server, page, factory):
    sim.add_account("bloom.studio")
    sim.settings.authorize_answer = "deny"
    boss = factory.user(superadmin=True)
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(boss.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto(live_server.url + "/admin/connect")
    page.get_by_role("button", name="Continue with Instagram").click()

    expect(page.locator("#connect-error")).to_contain_text("The authorization was cancelled on Instagram")
    screenshot(page, "connect-denied")
