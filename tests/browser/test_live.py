"""In a real Chromium against a real server and the simulator: the inbox is live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from inbox.extensions import db
from inbox.models import Conversation, Message, utcnow
from tests.support.browser import login, screenshot
from tests.support.servers import ThreadedServer
from tests.support.sim import wire_webhooks

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000


def _conversation_id(app, igsid: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == igsid))


def _open(page, base_url: str, account_id: int, conversation_id: int | None = None) -> None:
    path = f"/accounts/{account_id}/" + (f"c/{conversation_id}" if conversation_id else "")
    page.goto(base_url + path)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT)


@pytest.fixture
def alice(sim_webhooks, connected):
    """A customer who wrote to the shop through a real webhook."""
    alice = connected.ig.add_customer("alice", name="Alice")
    assert alice.sends_text("Hi! Is the red dress still available?").delivery.status == 200
    return alice


@pytest.fixture
def agent(factory, connected, auth):
    """An agent of the connected shop, logged in on `client` (the browser logs in by itself)."""
    user = factory.staff_on(connected.account, "agent", name="Agnes")
    auth.login(user)
    return user


def test_a_customer_message_appears_without_a_reload(page, app, live_server, connected, alice, agent):
    login(page, live_server.url, agent)
    conversation_id = _conversation_id(app, alice.igsid)
    _open(page, live_server.url, connected.account.id, conversation_id)
    screenshot(page, "live-live-indicator")
    page.evaluate("window.__sameDocument = true")

    alice.sends_text("And in size M? <script>window.__pwned = 1</script>")
    bubble = page.locator("#messages .msg-in").last
    expect(bubble).to_contain_text("And in size M? <script>window.__pwned = 1</script>", timeout=LIVE_TIMEOUT)
    expect(page.locator("#messages .msg")).to_have_count(2)
    expect(page.locator(f"#conversation-{conversation_id} .conv-preview")).to_contain_text("And in size M?")
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert page.evaluate("window.__pwned") is None
    # Read as it arrived: the open conversation shows no unread badge and counts as read.
    expect(page.locator(f"#conversation-{conversation_id} .unread-badge")).to_have_count(0, timeout=LIVE_TIMEOUT)
    with app.app_context():
        assert db.session.get(Conversation, conversation_id).unread_count == 0


def test_a_new_conversation_row_arrives_at_the_top_and_the_title_counts_it(page, app, live_server, connected, alice,
                                                                           agent):
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id)
    expect(page.locator("#conversation-list > li.conv-row")).to_have_count(1)
    bob = connected.ig.add_customer("bob", name="Bob")
    bob.sends_text("Do you ship to Lyon?")
    rows = page.locator("#conversation-list > li.conv-row")
    expect(rows).to_have_count(2, timeout=LIVE_TIMEOUT)
    expect(rows.first).to_contain_text("Do you ship to Lyon?")
    expect(page).to_have_title("(2) Inbox · @shop", timeout=LIVE_TIMEOUT)
    alice.sends_text("Hello again")
    expect(rows.first).to_contain_text("Hello again", timeout=LIVE_TIMEOUT)  # alice moved back to the top
    expect(rows).to_have_count(2)


def test_a_reply_is_pending_then_sent_and_the_customer_receives_it(page, app, live_server, connected, alice, agent,
                                                                   run_jobs, sim):
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
    box = page.locator("#composer textarea")
    box.fill("Yes, we have it in M.")
    box.press("Shift+Enter")
    box.type("Shall I reserve one?")
    expect(page.locator("#composer [data-bytes]")).to_have_text(str(len("Yes, we have it in M.\nShall I reserve one?")))
    box.press("Enter")

    mine = page.locator("#messages .msg-out")
    expect(mine).to_have_count(1)
    expect(mine.first).to_contain_text("Sending")
    expect(page.locator("#composer textarea")).to_have_value("")
    run_jobs()  # the worker sends it
    sim.settle()
    expect(mine.first.locator(".msg-status")).to_contain_text("Sent", timeout=LIVE_TIMEOUT)
    expect(mine).to_have_count(1)
    assert alice.received_texts == ["Yes, we have it in M.\nShall I reserve one?"]
    expect(page.locator("#conversation-list .conv-row").first).to_contain_text("You:")


def test_the_owner_typing_in_the_instagram_app_appears_once_with_its_badge(page, app, live_server, connected, alice,
                                                                           agent, sim):
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
    connected.ig.types_in_app(alice, "Typed on my phone")
    sim.settle()
    mine = page.locator("#messages .msg-out")
    expect(mine).to_have_count(1, timeout=LIVE_TIMEOUT)
    expect(mine.first).to_contain_text("Typed on my phone")
    expect(mine.first.locator(".msg-badge-app")).to_have_text("From the Instagram app")
    expect(page.locator("#conversation-list .conv-row").first).to_contain_text("From the Instagram app:")
    # A later event: whatever the echo pushed to this page arrived before it.
    alice.sends_text("Perfect, thanks")
    expect(page.locator("#messages .msg-in").last).to_contain_text("Perfect, thanks", timeout=LIVE_TIMEOUT)
    expect(mine).to_have_count(1)


def test_after_a_server_restart_the_page_reconnects_and_shows_what_arrived(page, app, live_server, connected, alice,
                                                                           agent, sim):
    # Meta posts to another web process; the browser is on live_server.
    other = ThreadedServer(app).start()
    try:
        wire_webhooks(sim, other.url)
        login(page, live_server.url, agent)
        _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))

        port = live_server.port
        app.extensions["inbox_shutdown"]()  # what gunicorn does on SIGTERM: sockets close with 1012
        live_server.stop()
        expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting", timeout=LIVE_TIMEOUT)
        screenshot(page, "live-reconnecting")
        alice.sends_text("Sent while you were away")
        bob = connected.ig.add_customer("bob")
        bob.sends_text("New here")

        restarted = ThreadedServer(app, port=port).start()
        try:
            expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=20_000)
            expect(page.locator("#messages")).to_contain_text("Sent while you were away", timeout=LIVE_TIMEOUT)
            expect(page.locator("#conversation-list > li.conv-row")).to_have_count(2, timeout=LIVE_TIMEOUT)
            # And it is live again.
            alice.sends_text("Back online?")
            expect(page.locator("#messages")).to_contain_text("Back online?", timeout=LIVE_TIMEOUT)
        finally:
            app.extensions["inbox_shutdown"]()
            restarted.stop()
    finally:
        other.stop()


def test_two_browsers_see_each_others_actions(browser, app, live_server, connected, alice, agent, factory, run_jobs,
                                              sim):
    colleague = factory.staff_on(connected.account, "admin", name="Colin")
    bob = connected.ig.add_customer("bob")
    bob.sends_text("Is the shop open on Sunday?")
    alice_id, bob_id = _conversation_id(app, alice.igsid), _conversation_id(app, bob.igsid)
    pages = []
    for user in (agent, colleague):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        page = context.new_page()
        login(page, live_server.url, user)
        pages.append(page)
    first, second = pages
    try:
        _open(first, live_server.url, connected.account.id, alice_id)
        _open(second, live_server.url, connected.account.id, alice_id)
        expect(second.locator(f"#conversation-{bob_id} .unread-badge")).to_have_count(1)

        first.locator("#composer textarea").fill("Reserved for you!")
        first.locator("#composer textarea").press("Enter")
        expect(second.locator("#messages .msg-out")).to_contain_text("Reserved for you!", timeout=LIVE_TIMEOUT)
        run_jobs()
        sim.settle()
        expect(second.locator("#messages .msg-out .msg-status")).to_contain_text("Sent", timeout=LIVE_TIMEOUT)

        # Opening bob's conversation in the first browser reads it in the second.
        first.locator(f"#conversation-{bob_id} a").click()
        expect(first.locator(f'#thread[data-conversation-id="{bob_id}"]')).to_be_visible()
        expect(second.locator(f"#conversation-{bob_id} .unread-badge")).to_have_count(0, timeout=LIVE_TIMEOUT)
        # The second browser still shows alice's thread, and her row is still the open one.
        expect(second.locator(f'#thread[data-conversation-id="{alice_id}"]')).to_be_visible()
    finally:
        for page in pages:
            page.context.close()


def test_a_failed_send_shows_the_reason_and_retry_sends_it(page, app, live_server, connected, alice, agent, run_jobs,
                                                           sim):
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
    sim.fail_next("send", 551)
    page.locator("#composer textarea").fill("Here is the link to pay")
    page.locator("#composer textarea").press("Enter")
    expect(page.locator("#messages .msg-out")).to_have_count(1)
    run_jobs()
    failure = page.locator("#messages .msg-out .msg-failure")
    expect(failure).to_contain_text("isn't available on Instagram", timeout=LIVE_TIMEOUT)
    screenshot(page, "live-failed-send")
    failure.get_by_role("button", name="Retry").click()
    expect(page.locator("#messages .msg-out .msg-failure")).to_have_count(0)
    run_jobs()
    sim.settle()
    expect(page.locator("#messages .msg-out .msg-status")).to_contain_text("Sent", timeout=LIVE_TIMEOUT)
    assert alice.received_texts == ["Here is the link to pay"]


def test_outside_the_window_the_composer_is_disabled_and_says_why(page, app, live_server, connected, alice, agent):
    with app.app_context():
        db.session.execute(update(Conversation).values(last_customer_message_at=utcnow() - timedelta(hours=30)))
        db.session.commit()
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
    expect(page.locator("#composer textarea")).to_be_disabled()
    expect(page.locator("#composer button[type=submit]")).to_be_disabled()
    expect(page.locator("#composer .composer-refusal")).to_contain_text("within 24 hours")
    screenshot(page, "live-composer-outside-window")


def test_the_counter_stops_a_message_over_1000_bytes(page, app, live_server, connected, alice, agent):
    login(page, live_server.url, agent)
    _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
    box = page.locator("#composer textarea")
    box.fill("é" * 501)
    expect(page.locator("#composer [data-bytes]")).to_have_text("1002")
    expect(page.locator("#composer button[type=submit]")).to_be_disabled()
    action = page.locator("#composer").get_attribute("action")
    replies = []
    page.on("request", lambda request: replies.append(request.url) if request.url.endswith(action) else None)
    box.press("Enter")
    # A later request from the page: a reply sent on Enter would have gone out before it.
    with page.expect_request(lambda request: request.url.endswith("/healthz")):
        page.evaluate("fetch('/healthz')")
    assert replies == []
    expect(page.locator("#messages .msg-out")).to_have_count(0)
    box.press("Backspace")
    expect(page.locator("#composer button[type=submit]")).to_be_enabled()
    screenshot(page, "live-composer-counter")
    with app.app_context():
        assert db.session.scalar(select(Message).where(Message.direction == "out")) is None


def test_desktop_notifications_are_opt_in_and_skip_the_open_thread(browser, app, live_server, connected, alice, agent):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["notifications"], origin=live_server.url)
    page = context.new_page()
    try:
        login(page, live_server.url, agent)
        bob = connected.ig.add_customer("bob")
        bob.sends_text("first")
        _open(page, live_server.url, connected.account.id, _conversation_id(app, alice.igsid))
        button = page.locator("#notify-toggle")
        expect(button).to_have_text("Enable notifications")
        bob.sends_text("Not opted in yet")
        expect(page.locator(f"#conversation-{_conversation_id(app, bob.igsid)}")).to_contain_text(
            "Not opted in yet", timeout=LIVE_TIMEOUT)
        assert page.evaluate("window.__liveLastNotice.shown") is False
        button.click()
        expect(button).to_have_text("Notifications on")
        bob.sends_text("Hello from bob")
        page.wait_for_function("window.__liveLastNotice && window.__liveLastNotice.shown === true",
                               timeout=LIVE_TIMEOUT)
        alice.sends_text("In the open thread")
        expect(page.locator("#messages")).to_contain_text("In the open thread", timeout=LIVE_TIMEOUT)
        page.wait_for_function("window.__liveLastNotice.conversation === '%s'" % _conversation_id(app, alice.igsid))
        notice = page.evaluate("window.__liveLastNotice")
        if notice["looking"]:  # headless Chromium may report no focus; then it is a background tab
            assert notice["shown"] is False
    finally:
        context.close()


def test_a_message_delivered_late_takes_its_place_by_time(page, app, live_server, connected, alice, agent):
    login(page, live_server.url, agent)
    conversation_id = _conversation_id(app, alice.igsid)
    _open(page, live_server.url, connected.account.id, conversation_id)

    alice.sends_text("Third, sent last")
    expect(page.locator("#messages .msg")).to_have_count(2, timeout=LIVE_TIMEOUT)
    # Meta delivers an earlier message after a later one (out-of-order delivery).
    with app.app_context():
        first = db.session.scalar(select(Message.meta_timestamp).where(Message.text.like("Hi! Is the red%")))
        last = db.session.scalar(select(Message.meta_timestamp).where(Message.text == "Third, sent last"))
    assert first < last
    alice.sends_text("Second, delivered late", at=(first + (last - first) // 2) / 1000)
    expect(page.locator("#messages .msg")).to_have_count(3, timeout=LIVE_TIMEOUT)
    expect(page.locator("#messages .msg .msg-bubble")).to_contain_text(
        ["Hi! Is the red dress still available?", "Second, delivered late", "Third, sent last"])
