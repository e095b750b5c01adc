"""Two staff members in two browsers against a real server and the simulator: invite → accept →
work as a team (assignment under Mine, notes with a mention, labels, the `/` picker, presence,
the activity line), and the inbox at 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation, Message
from inbox.services import labels, saved_replies
from tests.support.browser import login, screenshot
from tests.support.factory import PASSWORD

pytestmark = pytest.mark.browser

LIVE = 15_000


@pytest.fixture
def alice(sim_webhooks, connected, run_jobs):
    alice = connected.ig.add_customer("alice", name="Alice Moreau")
    assert alice.sends_text("Hi! Is the red dress still available?").delivery.status == 200
    run_jobs()  # her profile: the thread and the saved reply know her name
    return alice


@pytest.fixture
def second_browser(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    # Record desktop notifications the page asks for (headless Chromium shows none).
    context.add_init_script("""
        window.__notices = [];
        window.Notification = function (title, options) { window.__notices.push(title); };
        window.Notification.permission = "granted";
        window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
    """)
    page = context.new_page()
    yield page
    context.close()


def _live(page):
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=LIVE)


def test_invite_accept_assign_note_label_picker_and_presence(page, second_browser, app, live_server, connected,
                                                             alice, factory):
    account = connected.account
    base = f"{live_server.url}/accounts/{account.id}"
    ana = factory.staff_on(account, "admin", name="Ana")
    with app.app_context():
        conversation_id = db.session.scalar(select(Conversation.id))
        labels.create_label(account.id, "VIP", "purple")
        saved_replies.create_reply(account.id, "price", "Hi {first_name}! It is in stock. — {agent}")

    # Ana invites Ben; Ben opens the link in his own browser, sets a password and lands in the inbox.
    login(page, live_server.url, ana)
    page.goto(f"{base}/team")
    page.get_by_label("Email").fill("ben@shop.example")
    page.get_by_role("button", name="Invite").click()
    link = page.locator("#invite-link").input_value()
    assert "/invite/" in link
    screenshot(page, "team-invite")
    ben_page = second_browser
    ben_page.goto(link)
    ben_page.get_by_label("Your name").fill("Ben")
    ben_page.locator("input[name=password]").fill(PASSWORD)
    ben_page.get_by_label("Repeat the password").fill(PASSWORD)
    ben_page.get_by_role("button", name="Join the team").click()
    ben_page.wait_for_url(f"{base}/")
    # Ben looks at Mine: nothing yet.
    ben_page.select_option("#conv-assignee", "me")
    expect(ben_page.locator("#conversation-list .conv-row")).to_have_count(0)
    _live(ben_page)

    # Ana opens the conversation and gives it to Ben: it appears under Ben's Mine, with a notification.
    page.goto(f"{base}/c/{conversation_id}")
    _live(page)
    page.reload()  # the team bar lists Ben now that he joined
    _live(page)
    page.select_option(f"#assignee-{conversation_id}", label="Ben")
    expect(ben_page.locator(f"#conversation-{conversation_id}")).to_be_visible(timeout=LIVE)
    expect(ben_page.locator("#team-toast")).to_contain_text("Ana assigned you a conversation", timeout=LIVE)
    assert "Ana assigned you a conversation" in ben_page.evaluate("window.__notices")
    expect(page.locator("#messages .activity-line")).to_contain_text("Ana assigned this to Ben", timeout=LIVE)

    # Ben opens it: Ana sees him viewing, then typing.
    ben_page.locator(f"#conversation-{conversation_id} .conv-link").click()
    expect(ben_page.locator("#thread .thread-name")).to_contain_text("alice")
    expect(page.locator(f"#presence-{conversation_id}")).to_contain_text("Ben is viewing", timeout=LIVE)
    ben_page.locator("#composer-text").type("Let me check")
    expect(page.locator(f"#presence-{conversation_id}")).to_contain_text("is typing", timeout=LIVE)
    expect(ben_page.locator(f"#presence-{conversation_id} [data-user-id]")).to_have_count(1)  # Ana, not himself
    ben_page.locator("#composer-text").fill("")

    # Ana leaves a note that mentions Ben: never sent, shown in both threads, Ben notified.
    page.locator("#composer .composer-mode").get_by_text("Note").click()
    expect(page.locator("#composer-text")).to_have_attribute("placeholder", "Write a private note… (@name mentions a colleague; never sent to Instagram)")
    page.locator("#composer-text").fill("@ben she asked about size M too")
    page.locator("#composer-text").press("Enter")
    note = ben_page.locator("#messages .note").last
    expect(note).to_contain_text("she asked about size M too", timeout=LIVE)
    expect(note.locator(".mention")).to_have_text("@ben")
    expect(page.locator("#messages .note")).to_have_count(1, timeout=LIVE)
    note_id = note.get_attribute("id")
    assert note_id and note_id.startswith("note-")
    expect(ben_page.locator("#team-toast")).to_contain_text("Ana mentioned you", timeout=LIVE)
    with app.app_context():
        assert db.session.scalar(select(Message.id).where(Message.direction == "out")) is None
    ben_page.goto(f"{base}/?view=mentions")
    expect(ben_page.locator(f"#conversation-{conversation_id}")).to_be_visible()

    # Labels from the thread header; Ben filters by it.
    page.select_option(f"#label-add-{conversation_id}", label="VIP")
    expect(page.locator(f"#thread-team-{conversation_id} .chip-label")).to_contain_text("VIP", timeout=LIVE)
    expect(page.locator("#messages .activity-line").last).to_contain_text("Ana added the label VIP", timeout=LIVE)
    ben_page.goto(f"{base}/")
    ben_page.select_option("#conv-label", label="VIP")
    expect(ben_page.locator(f"#conversation-{conversation_id} .chip-label")).to_contain_text("VIP")

    # The `/` picker, with the keyboard only: the text arrives filled.
    page.locator("#composer .composer-mode").get_by_text("Reply").click()
    page.locator("#composer-text").fill("")
    page.locator("#composer-text").type("/pr")
    expect(page.locator("#reply-picker .reply-option")).to_have_count(1, timeout=LIVE)
    expect(page.locator("#reply-picker")).to_contain_text("/price")
    page.locator("#composer-text").press("Enter")
    expect(page.locator("#composer-text")).to_have_value("Hi Alice! It is in stock. — Ana", timeout=LIVE)
    expect(page.locator("#reply-picker")).to_be_hidden()
    screenshot(page, "team-thread-admin")
    screenshot(ben_page, "team-list-agent")


def test_the_inbox_at_390px(browser, app, live_server, connected, alice, factory):
    account = connected.account
    ana = factory.staff_on(account, "admin", name="Ana")
    with app.app_context():
        conversation_id = db.session.scalar(select(Conversation.id))
        labels.create_label(account.id, "Wholesale", "blue")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        login(page, live_server.url, ana)
        page.goto(f"{live_server.url}/accounts/{account.id}/")
        _live(page)
        expect(page.locator(".conv-pane")).to_be_visible()
        expect(page.locator("#thread")).to_be_hidden()
        wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
            .filter(el => el.getBoundingClientRect().right > 391 && el.getClientRects().length)
            .map(el => el.tagName + '.' + el.className + '#' + el.id).slice(0, 8)""")
        assert wide == [] and page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "team-390-list")
        page.locator(f"#conversation-{conversation_id} .conv-link").click()
        expect(page.locator("#thread .thread-name")).to_contain_text("alice")
        expect(page.locator(".conv-pane")).to_be_hidden()
        expect(page.locator(".thread-back")).to_be_visible()
        composer = page.locator("#composer")
        expect(composer).to_be_visible()
        box = composer.bounding_box()
        assert box["y"] + box["height"] <= 844 + 1  # the composer sits on screen, at the foot
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        overflowing = page.evaluate("""() => Array.from(document.querySelectorAll('#thread *'))
            .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1).map(el => el.className).slice(0, 5)""")
        assert overflowing == []
        screenshot(page, "team-390-thread")
        page.locator(".thread-back").click()
        expect(page.locator(".conv-pane")).to_be_visible()
        # The pages beyond the inbox are one menu away: the bar's links hide, the menu shows them.
        expect(page.locator(".mainnav")).to_be_hidden()
        page.locator(".phone-nav > summary").click()
        screenshot(page, "team-390-menu")
        page.locator(".phone-nav").get_by_role("link", name="Team").click()
        expect(page.locator("h1")).to_contain_text("Team")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
