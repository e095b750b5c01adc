"""In a real Chromium: a comment appears live; a public reply, hide and a private reply from the
comments view; the private reply's conversation carries the post's product and says why."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Post
from inbox.services import automations
from tests.support.browser import login, screenshot
from tests.support.jobs import background_worker

pytestmark = pytest.mark.browser


def test_comments_live_public_reply_hide_and_private_reply(page, app, factory, sim_webhooks, connected, live_server):
    account, shop = connected.account, connected.ig
    agent = factory.staff_on(account, "agent", name="Ana")
    media = shop.add_post("Our new red linen dress is here")
    product = factory.product(account, "Red Dress", "RD-1", price="89.00", currency="EUR")
    factory.link(factory.post(account, media.id, caption="Our new red linen dress is here", is_own=True), product)
    anna = shop.add_customer("anna.b")  # she comments; she never wrote a DM
    first = anna.comments_on(media, "Is it available in M? 😍")
    with app.app_context():
        post_id = db.session.scalar(select(Post.id).where(Post.media_id == media.id))

    login(page, live_server.url, agent)
    page.goto(f"{live_server.url}/accounts/{account.id}/comments/posts/{post_id}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    thread = page.locator(f"#post-comments-{post_id}")
    expect(thread).to_contain_text("Is it available in M? 😍")

    # A new comment, and a reply to the first one, appear live without a reload.
    ben = shop.add_customer("ben.k")
    ben.comments_on(media, "price <please>?")
    anna.comments_on(media, "@ben.k 89 I think", reply_to=first.mid)
    expect(thread).to_contain_text("price <please>?")
    expect(thread.locator(".comment-replies").first).to_contain_text("@ben.k 89 I think")
    expect(page.locator(f"#comment-post-{post_id}")).to_contain_text("3 comments")
    screenshot(page, "comments-live")

    first_row = page.locator(".comment", has_text="Is it available in M?").first.locator(":scope > .comment-main")
    with background_worker(factory.app):
        # Reply publicly: our reply shows under the comment once Instagram took it.
        first_row.get_by_text("Reply", exact=True).click()
        first_row.get_by_label("Public reply").fill("@anna.b Yes, M is in stock!")
        first_row.get_by_role("button", name="Reply publicly").click()
        own = page.locator(".comment.is-own", has_text="Yes, M is in stock!")
        expect(own).to_be_visible()
        expect(own).not_to_contain_text("Sending to Instagram…", timeout=15_000)

        # Hide Ben's comment.
        ben_row = page.locator(".comment", has_text="price <please>?")
        ben_row.get_by_role("button", name="Hide").click()
        expect(ben_row.locator(".chip-hidden")).to_have_text("Hidden", timeout=15_000)
        assert sim_webhooks.world.comments[next(c.id for c in sim_webhooks.world.comments.values()
                                                if c.text == "price <please>?")].hidden

        # Reply privately to Anna: once only.
        first_row = page.locator(".comment", has_text="Is it available in M?").first.locator(
            ":scope > .comment-main")
        first_row.get_by_text("Reply privately").click()
        first_row.locator("textarea[placeholder*='direct message']").fill("Hi Anna! M is 89 EUR, want one?")
        first_row.get_by_role("button", name="Send privately").click()
        replied = first_row.locator(".comment-private")
        expect(replied).to_contain_text("Replied privately")
        expect(replied).to_contain_text("Sent", timeout=15_000)
        expect(first_row.locator(".comment-why")).to_contain_text("one private reply per comment")
        screenshot(page, "comments-actions")
        sim_webhooks.settle()
    assert [r.text for r in anna.received] == ["Hi Anna! M is 89 EUR, want one?"]

    # The conversation it opened carries the product and says why.
    replied.get_by_role("link").click()
    expect(page.locator(".msg-comment-ref")).to_contain_text(
        "Replied privately to a comment on “Our new red linen dress is here”")
    page.get_by_text("Why this product").click()
    expect(page.locator(".why-product")).to_contain_text("commented on post “Our new red linen dress is here” "
                                                         "(Red Dress)")
    expect(page.locator(".thread-product-source").first).to_contain_text("comment")
    screenshot(page, "comments-private-reply-thread")


def test_the_automations_page_shows_rules_and_their_firings_live(page, app, factory, sim_webhooks, connected,
                                                                  live_server):
    account, shop = connected.account, connected.ig
    admin = factory.staff_on(account, "admin", name="Ana")
    media = shop.add_post("Canvas tote")
    with app.app_context():
        spec = automations.check_rule(account.id, name="Price questions", keywords="price, 💰",
                                      template="Hi {first_name}! Here it is: {link}", public_replies=["Sent you a DM!"])
        automations.create_automation(account.id, spec, None)
    login(page, live_server.url, admin)
    page.goto(f"{live_server.url}/accounts/{account.id}/automations/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    rule = page.locator(".automation", has_text="Price questions")
    expect(rule).to_contain_text("Not fired yet.")
    with background_worker(factory.app):
        shop.add_customer("nora").comments_on(media, "PRICE?? 💰")
        expect(rule.locator(".automation-history")).to_contain_text("fired", timeout=15_000)
        expect(rule.locator(".automation-history")).to_contain_text("@nora")
    rule.get_by_role("button", name="Pause").click()
    expect(rule.locator(".chip").first).to_have_text("Paused")
    screenshot(page, "automations-page")
