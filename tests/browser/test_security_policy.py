"""Every page works under the Content-Security-Policy: no inline script, nothing the browser refuses.

A real Chromium visits the pages staff use (inbox, a thread, comments, products, posts, people,
runs, the admin pages and the deliveries page with its work owed) and records every
`securitypolicyviolation` the page reports; htmx and the live socket must still work.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from inbox.extensions import db
from inbox.models import Message, utcnow
from tests.support.browser import screenshot
from tests.support.factory import PASSWORD

pytestmark = pytest.mark.browser

WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_the_pages_staff_use_break_no_rule_of_the_policy(app, factory, page, live_server, account):
    conversation = factory.conversation(account, messages=["Is the blue one in stock?"])
    factory.message(conversation, "Stuck while Redis was away", out=True, status="pending")
    with app.app_context():
        db.session.execute(update(Message).where(Message.status == "pending").values(
            created_at=utcnow() - timedelta(minutes=6), updated_at=utcnow() - timedelta(minutes=6)))
        db.session.commit()
    admin = factory.user(superadmin=True, name="Site Admin")
    factory.grant(admin, account, "admin")
    page.add_init_script(WATCH)
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")  # the socket connects under the policy

    base = f"{live_server.url}/accounts/{account.id}"
    paths = [f"{base}/", f"{base}/c/{conversation.id}", f"{base}/comments/", f"{base}/products/",
             f"{base}/posts", f"{base}/people/", "/admin/accounts", "/admin/staff", "/admin/deliveries/"]
    seen = {}
    for path in paths:
        page.goto(path if path.startswith("http") else live_server.url + path)
        page.wait_for_load_state("networkidle")
        seen[path] = page.evaluate("window.__csp")
    assert all(not violations for violations in seen.values()), seen

    owed = page.locator("#owed-reply")
    expect(owed).to_contain_text("Overdue by")
    expect(page.locator("#owed-media")).to_contain_text("Nothing owed")
    screenshot(page, "deliveries-work-owed")
