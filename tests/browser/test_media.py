"""In a real Chromium: a thread's media after Instagram's links expired; staff send an image."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation, Message
from inbox.sim.cdn import png
from tests.support.browser import login, screenshot

pytestmark = pytest.mark.browser



def test_kept_media_shows_after_expiry_and_staff_send_an_image(page, sim_webhooks, connected, app, factory,
                                                                run_jobs, live_server, tmp_path):
    sim = sim_webhooks
    app.config["PUBLIC_BASE_URL"] = live_server.url
    account, shop = connected.account, connected.ig
    alice = shop.add_customer("alice", name="Alice")
    alice.sends_text("Here is the dress I mean", at=time.time() - 3 * 3600)
    alice.sends_attachment("image", at=time.time() - 3 * 3600)
    alice.sends_attachment("audio", at=time.time() - 3 * 3600)
    alice.mentions_in_story(at=time.time() - 26 * 3600)
    run_jobs()  # image and audio kept
    late = alice.sends_attachment("video", at=time.time() - 3600)
    for i in range(20):  # older than the thread's 20 newest: Instagram will not renew its link
        alice.sends_text(f"(in the app) message {i}", at=time.time() - 3000 + i, deliver=False)
    sim.advance(days=4)  # every Instagram link is dead
    run_jobs()  # the video's download comes too late: expired
    alice.sends_attachment("image")  # a fresh one, its download still queued: pending
    with app.app_context():
        conversation_id = db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == alice.igsid))
        late_state = db.session.scalar(select(Message).where(Message.mid == late.mid)).attachments[0].media_state
    assert late_state == "expired"

    user = factory.staff_on(account, "agent")
    login(page, live_server.url, user)
    page.goto(f"{live_server.url}/accounts/{account.id}/c/{conversation_id}")
    thread = page.locator("#thread")
    expect(thread.locator(".att-image img").first).to_be_visible()
    # The kept image really loads (from our copy: Instagram's link answers 403 now).
    first_image = thread.locator(".att-image img").first
    assert "/media/attachments/" in first_image.get_attribute("src")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first_image.element_handle())
    assert "/media/attachments/" in thread.locator(".att-audio audio").get_attribute("src")
    expect(thread.locator('[data-media-state="expired"]')).to_contain_text("Expired on Instagram")
    expect(thread.locator('[data-media-state="pending"]')).to_contain_text("Saving a copy")
    expect(thread.locator(".att-story")).to_contain_text("Story no longer available")
    page.set_viewport_size({"width": 1280, "height": 1500})
    screenshot(page, "media-thread-after-expiry")

    # Staff attach an image to a reply: it reaches the customer as its own message.
    alice.sends_text("Can you send a photo of the back?")
    page.reload()
    picture = tmp_path / "back.png"
    picture.write_bytes(png(40, 40, (220, 30, 90)))
    page.locator("#attach-files").set_input_files(str(picture))
    page.locator("#attach-form button[type=submit]").click()
    # The pending bubble appears at once, showing our stored copy; the form is fresh again.
    expect(page.locator("#thread .msg-out .att-image img")).to_have_count(1)
    assert "/media/attachments/" in page.locator("#thread .msg-out .att-image img").get_attribute("src")
    expect(page.locator("#attach-form")).to_be_visible()
    run_jobs()  # the send was queued before the pending bubble was answered
    [received] = [r for r in alice.received if r.attachments]
    assert received.attachments[0]["type"] == "image"
    sim.settle()
    page.reload()
    expect(page.locator("#thread .msg").last).to_be_visible()
    screenshot(page, "media-thread-sent-image")
