"""In a real Chromium: first-run setup, login, and the empty inbox."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import screenshot
from tests.support.factory import PASSWORD

pytestmark = pytest.mark.browser


def test_setup_then_login_then_empty_inbox(page, live_server, runner):
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    screenshot(page, "foundation-setup")

    page.get_by_label("Your name").fill("Olga Owner")
    page.get_by_label("Email").fill("olga@shop.example")
    page.get_by_label("Password", exact=False).first.fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_role("heading", name="No Instagram account yet")).to_be_visible()

    # An account appears (from the CLI), and the owner is given it.
    assert runner.invoke(args=["accounts", "add", "17841400000000009", "--username", "bloom.studio"]).exit_code == 0
    assert runner.invoke(args=["accounts", "grant", "17841400000000009", "olga@shop.example", "--role", "admin"]).exit_code == 0

    page.get_by_text("Olga Owner").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Email").fill("olga@shop.example")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    screenshot(page, "foundation-login-error")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(page.locator(".account-current")).to_have_text("@bloom.studio")
    screenshot(page, "foundation-inbox-empty")
