"""The webhook deliveries page: site administrators only, failed deliveries, a CSRF-protected replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from inbox.extensions import db
from inbox.models import Message, utcnow
from tests.support.browser import screenshot
from tests.support.factory import PASSWORD
from tests.support.stored import deliveries, messages
from tests.support.refusals import refusing
from tests.support.webhooks import envelope, message, post


@pytest.fixture
def failed_delivery(app, client, account):
    """A signed delivery over the size limit: stored, marked failed, waiting for a person."""
    app.config["WEBHOOK_MAX_BYTES"] = 200
    post(client, b'{"object":"instagram","entry":[{"id":"<script>alert(1)</script>","pad":"' + b"x" * 300 + b'"}]}')
    return deliveries(app)[-1]


def test_site_administrators_see_failed_deliveries(client, auth, factory, failed_delivery):
    auth.login(factory.user(superadmin=True))
    page = client.get("/admin/deliveries/").get_data(as_text=True)
    assert f"#{failed_delivery.id}" in page and "over the 200-byte limit" in page and "Replay" in page
    detail = client.get(f"/admin/deliveries/{failed_delivery.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "<script>alert(1)" not in detail


def test_account_staff_may_not_see_deliveries(client, auth, factory, failed_delivery):
    account = factory.account()
    auth.login(factory.staff_on(account, "admin"))
    assert client.get("/admin/deliveries/").status_code == 403
    assert client.get(f"/admin/deliveries/{failed_delivery.id}").status_code == 403
    assert client.post(f"/admin/deliveries/{failed_delivery.id}/replay").status_code == 403


def test_replay_needs_the_csrf_token(app, client, auth, factory, failed_delivery):
    auth.login(factory.user(superadmin=True))
    assert client.post(f"/admin/deliveries/{failed_delivery.id}/replay", csrf=False).status_code == 400
    attempts = deliveries(app)[-1].attempts
    response = client.post(f"/admin/deliveries/{failed_delivery.id}/replay")
    assert response.status_code == 302
    assert deliveries(app)[-1].attempts == attempts + 1
    assert client.post("/admin/deliveries/999999/replay").status_code == 404


@pytest.mark.browser
def test_a_failed_delivery_is_replayed_from_the_page(app, client, factory, page, live_server, account):
    with refusing(app, "hold on") as allow:  # the database refuses this one message for a while
        _replay_from_the_page(app, client, factory, page, live_server, allow)


def _replay_from_the_page(app, client, factory, page, live_server, allow):
    post(client, envelope(message("m-1", "Is the red dress in stock?"), message("m-2", "hold on", ts=1767225601000)))
    app.config["WEBHOOK_MAX_BYTES"] = 300
    post(client, b'{"object":"instagram","entry":[],"pad":"' + b"x" * 300 + b'"}')
    admin = factory.user(superadmin=True, name="Site Admin")

    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Deliveries").click()
    expect(page.get_by_role("heading", name="Webhook deliveries")).to_be_visible()
    rows = page.locator("table.deliveries tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("over the 300-byte limit")
    expect(rows.nth(1)).to_contain_text("1 of 2 event(s) failed")
    screenshot(page, "deliveries-failed")

    rows.nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    expect(page.locator("pre.raw-body")).to_contain_text("Is the red dress in stock?")
    screenshot(page, "deliveries-detail")

    allow()
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_text("applied again: processed")).to_be_visible()
    screenshot(page, "deliveries-replayed")
    assert [m.text for m in messages(app)] == ["Is the red dress in stock?", "hold on"]
    page.get_by_role("link", name="← Webhook deliveries").click()
    expect(rows).to_have_count(1)
    screenshot(page, "deliveries-after-replay")


def test_the_page_shows_the_oldest_work_owed_per_kind_and_what_is_overdue(app, client, auth, factory, account):
    auth.login(factory.user(superadmin=True))
    conversation = factory.conversation(account, messages=["hi"])
    factory.message(conversation, "stuck", out=True, status="pending")
    with app.app_context():
        db.session.execute(update(Message).where(Message.status == "pending").values(
            created_at=utcnow() - timedelta(minutes=7), updated_at=utcnow() - timedelta(minutes=7)))
        db.session.commit()
    page = client.get("/admin/deliveries/").get_data(as_text=True)
    reply_row = page.split('id="owed-reply"')[1].split("</tr>")[0]
    assert 'data-overdue="1"' in page.split('id="owed-reply"')[1][:40] and "Overdue by" in reply_row
    assert ">1<" in reply_row and "7m ago" in reply_row
    for kind in ("media", "delivery"):
        assert "Nothing owed" in page.split(f'id="owed-{kind}"')[1].split("</tr>")[0]
