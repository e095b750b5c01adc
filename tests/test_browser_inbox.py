"""In a real Chromium: log in, open a conversation, read its bubbles; customer text stays text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support import inbox_state
from tests.support.browser import screenshot
from tests.support.factory import PASSWORD
from tests.support.webhooks import ACCOUNT, T0, envelope, fixture, message, post

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("INBOX_SHOTS", "/tmp/shots"))
EVERY_KIND = ["text", "image", "video", "audio", "file", "share", "ig_post_media_id", "ig_reel", "reel",
              "story_mention", "ig_story", "ephemeral", "fallback", "template_product", "sticker",
              "unknown_attachment", "unsupported", "reply_to_story", "reply_to_message", "echo_text",
              "echo_image", "reaction_react", "edit", "quick_reply", "ad_referral"]


def _login(page, base_url: str, user) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _shot(page, name: str) -> None:
    screenshot(page, f"live-ui-{name}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"live-ui-{name}.png"))


def test_open_a_thread_and_read_it_as_text(page, live_server, app, client, factory):
    shop = factory.account(ig_user_id=ACCOUNT, username="shop")
    user = factory.staff_on(shop, "agent")
    for name in EVERY_KIND:
        assert post(client, json.loads(fixture(name))).status_code == 200
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    for i, text in enumerate(["Hi! Is the red dress still available in M?", hostile]):
        assert post(client, envelope(message(f"mid.bob.{i}", text, customer="9100000000000777",
                                             ts=T0 + 60_000 * (i + 1)))).status_code == 200
    for i in range(12):
        post(client, envelope(message(f"mid.more.{i}", f"Question number {i} about shipping",
                                      customer=f"91000000000009{i:02d}", ts=T0 - 3_600_000 * (i + 1))))
    bob = next(c for c in inbox_state.conversations(app) if c.customer_igsid == "9100000000000777")

    _login(page, live_server.url, user)
    page.goto(f"{live_server.url}/accounts/{shop.id}/")
    rows = page.locator("#conversation-list > li.conv-row")
    expect(rows.first).to_be_visible()
    assert rows.count() == 14
    _shot(page, "list")

    page.locator(f"#conversation-{bob.id} a").click()
    expect(page.locator("#thread .msg").first).to_be_visible()
    expect(page).to_have_url(f"{live_server.url}/accounts/{shop.id}/c/{bob.id}")
    bubbles = page.locator("#messages .msg")
    expect(bubbles).to_have_count(2)
    expect(bubbles.nth(1).locator(".msg-text")).to_have_text(hostile)
    assert page.evaluate("window.__pwned") is None
    # Opening it read it: the row's unread badge is gone.
    expect(page.locator(f"#conversation-{bob.id} .unread-badge")).to_have_count(0)
    _shot(page, "thread-escaped")

    other = next(c for c in inbox_state.conversations(app) if c.customer_igsid == "9100000000000001")
    page.locator(f"#conversation-{other.id} a").click()
    expect(page.locator(f'#thread[data-conversation-id="{other.id}"]')).to_be_visible()
    expect(page.locator("#thread video.att-video-el")).to_have_count(1)
    page.set_viewport_size({"width": 1280, "height": 3000})
    _shot(page, "thread-every-kind")
