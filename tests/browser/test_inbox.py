"""In a real Chromium: log in, open a conversation, read its bubbles; customer text stays text."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.support import stored
from tests.support.browser import login, screenshot
from tests.support.webhooks import T0, envelope, fixture, message, post

pytestmark = pytest.mark.browser

EVERY_KIND = ["text", "image", "video", "audio", "file", "share", "ig_post_media_id", "ig_reel", "reel",
              "story_mention", "ig_story", "ephemeral", "fallback", "template_product", "sticker",
              "unknown_attachment", "unsupported", "reply_to_story", "reply_to_message", "echo_text",
              "echo_image", "reaction_react", "edit", "quick_reply", "ad_referral"]


def test_open_a_thread_and_read_it_as_text(page, live_server, app, client, factory, account):
    user = factory.staff_on(account, "agent")
    for name in EVERY_KIND:
        assert post(client, json.loads(fixture(name))).status_code == 200
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    for i, text in enumerate(["Hi! Is the red dress still available in M?", hostile]):
        assert post(client, envelope(message(f"mid.bob.{i}", text, customer="9100000000000777",
                                             ts=T0 + 60_000 * (i + 1)))).status_code == 200
    for i in range(12):
        post(client, envelope(message(f"mid.more.{i}", f"Question number {i} about shipping",
                                      customer=f"91000000000009{i:02d}", ts=T0 - 3_600_000 * (i + 1))))
    bob = next(c for c in stored.conversations(app) if c.customer_igsid == "9100000000000777")

    login(page, live_server.url, user)
    page.goto(f"{live_server.url}/accounts/{account.id}/")
    rows = page.locator("#conversation-list > li.conv-row")
    expect(rows.first).to_be_visible()
    assert rows.count() == 14
    screenshot(page, "inbox-list")

    page.locator(f"#conversation-{bob.id} a").click()
    expect(page.locator("#thread .msg").first).to_be_visible()
    expect(page).to_have_url(f"{live_server.url}/accounts/{account.id}/c/{bob.id}")
    bubbles = page.locator("#messages .msg")
    expect(bubbles).to_have_count(2)
    expect(bubbles.nth(1).locator(".msg-text")).to_have_text(hostile)
    assert page.evaluate("window.__pwned") is None
    # Opening it read it: the row's unread badge is gone.
    expect(page.locator(f"#conversation-{bob.id} .unread-badge")).to_have_count(0)
    screenshot(page, "inbox-thread-escaped")

    other = next(c for c in stored.conversations(app) if c.customer_igsid == "9100000000000001")
    page.locator(f"#conversation-{other.id} a").click()
    expect(page.locator(f'#thread[data-conversation-id="{other.id}"]')).to_be_visible()
    expect(page.locator("#thread video.att-video-el")).to_have_count(1)
    page.set_viewport_size({"width": 1280, "height": 3000})
    screenshot(page, "inbox-thread-every-kind")


def test_every_attachment_kind_from_the_simulator(page, live_server, app, factory, sim_webhooks, connected):
    """A realistic thread through real webhooks and the simulator's CDN; a screenshot to look at."""
    from datetime import datetime, timedelta, timezone

    account, shop = connected.account, connected.ig
    user = factory.staff_on(account, "agent")
    alice = shop.add_customer("amara.k", name="Amara Kone")
    day1 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1, hours=2)
    day2 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    bag = shop.add_post("Woven bag, back in stock #bag")
    first = alice.sends_text("Hi! Is the woven bag still available?", at=day1)
    alice.shares_post(bag, at=day1 + timedelta(seconds=5))
    alice.shares_reel(caption="How we dye the linen", at=day1 + timedelta(seconds=10))
    shop.types_in_app(alice, "Yes! We have two left in natural.", at=day1 + timedelta(minutes=3))
    alice.reacts(first.mid, at=day1 + timedelta(minutes=4))
    alice.sends_attachment("image", at=day2)
    alice.sends_attachment("video", at=day2 + timedelta(seconds=1))
    alice.sends_attachment("audio", at=day2 + timedelta(seconds=2))
    alice.sends_attachment("file", at=day2 + timedelta(seconds=3))
    alice.sends_sticker(at=day2 + timedelta(seconds=4))
    alice.mentions_in_story(at=day2 + timedelta(seconds=5))
    alice.replies_to_story("Love this colour!", at=day2 + timedelta(seconds=6))
    alice.sends_ig_story(at=day2 + timedelta(seconds=7))
    alice.sends_ephemeral(at=day2 + timedelta(seconds=8))
    alice.sends_fallback("https://example.com/red-dress", "Red dress | Example", at=day2 + timedelta(seconds=9))
    alice.sends_product_template(at=day2 + timedelta(seconds=10))
    alice.sends_unsupported(at=day2 + timedelta(seconds=11))
    alice.sends_unknown(at=day2 + timedelta(seconds=12))
    typo = alice.sends_text("Do you ship to Lisbn?", at=day2 + timedelta(seconds=13))
    alice.edits(typo.mid, "Do you ship to Lisbon?", at=day2 + timedelta(seconds=14))
    oops = alice.sends_text("wrong chat, sorry", at=day2 + timedelta(seconds=15))
    alice.unsends(oops.mid, at=day2 + timedelta(seconds=16))
    alice.replies_to(first.mid, "(about the bag, I mean)", at=day2 + timedelta(seconds=17))
    product = factory.product(account, "Woven bag", "BAG-1")
    factory.link(factory.post(account, bag.id, caption=bag.caption, is_own=True, owner_username=shop.username,
                              permalink=bag.permalink or None), product)

    login(page, live_server.url, user)
    page.goto(f"{live_server.url}/accounts/{account.id}/")
    page.locator("#conversation-list .conv-link").first.click()
    thread = page.locator("#thread")
    expect(thread.locator(".msg").first).to_be_visible()
    for kind in ("image", "video", "audio", "file", "ig_post", "story_mention", "ig_story", "ephemeral",
                 "fallback", "template", "sticker", "unknown"):
        expect(thread.locator(f".att-{kind}").first).to_be_visible()
    expect(thread.locator(".att-ig_post .chip-product")).to_have_text("Woven bag")
    expect(thread.locator(".msg-badge-app")).to_have_count(1)
    expect(thread.locator(".day-sep")).to_have_count(2)
    expect(thread.locator(".msg-quote")).to_contain_text("Is the woven bag still available?")
    # The simulator's CDN serves real pictures: they load (naturalWidth > 0).
    page.wait_for_function("() => { const i = document.querySelector('#thread img.att-img'); return i && i.complete && i.naturalWidth > 0; }")
    page.set_viewport_size({"width": 1280, "height": 2600})
    screenshot(page, "inbox-thread-sim")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "inbox-thread-mobile")


def test_search_as_you_type_filters_and_infinite_scroll(page, live_server, app, client, factory, account):
    from inbox.services.conversations import PAGE_SIZE

    user = factory.staff_on(account, "agent")
    total = PAGE_SIZE + 12
    for i in range(total):
        text = "Do you ship to Lisbon?" if i == 3 else f"Question {i} about sizes"
        post(client, envelope(message(f"mid.scroll.{i}", text, customer=f"9100000000001{i:03d}", ts=T0 + i * 60_000)))
    login(page, live_server.url, user)
    page.goto(f"{live_server.url}/accounts/{account.id}/")
    rows = page.locator("#conversation-list > li.conv-row")
    expect(rows).to_have_count(PAGE_SIZE)
    page.locator("#conversation-list .conv-more").scroll_into_view_if_needed()
    expect(rows).to_have_count(total)
    expect(page.locator("#conversation-list .conv-more")).to_have_count(0)

    page.get_by_label("Search conversations").press_sequentially("lisb", delay=40)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Do you ship to Lisbon?")
    expect(page).to_have_url(f"{live_server.url}/accounts/{account.id}/?q=lisb")
    page.get_by_label("Search conversations").fill("")
    page.get_by_label("Search conversations").press("Enter")
    expect(rows).to_have_count(PAGE_SIZE)

    rows.first.locator("a").click()
    expect(page.locator("#thread .msg")).to_have_count(1)
    page.get_by_role("radio", name="Unread").check(force=True)
    expect(rows).to_have_count(PAGE_SIZE)  # the open one is read now; 41 others are unread
    expect(page).to_have_url(f"{live_server.url}/accounts/{account.id}/?view=unread")
    assert page.title().startswith(f"({total - 1}) Inbox")
    page.get_by_role("button", name="Mark done").click()
    expect(page.locator("#thread-status .chip-done")).to_have_text("Done")
    expect(page.locator("#thread-status").get_by_role("button", name="Reopen")).to_be_visible()
