"""The security review's findings (issue 12), each as a person would meet it.

Headers and CSP, the client address behind a proxy and login throttling, logout ending the
session everywhere (cookie copies, remember-me, open sockets), revocation closing sockets at
once, CSRF rotation on login, oversized ids, and redirects that stay on the site.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Membership
from tests.support.clients import InboxClient, logged_in_client
from tests.support.factory import PASSWORD
from tests.support.live import LiveSocket, session_cookie

HUGE = str(2**64 + 5)


# --- Headers ------------------------------------------------------------------------------

def test_every_page_says_what_may_run_and_that_no_one_may_frame_it(client, account, agent):
    for path in ("/login", f"/accounts/{account.id}/", "/static/app.js"):
        response = client.get(path, follow_redirects=True)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_no_template_carries_inline_script_or_handlers():
    root = Path(__file__).resolve().parents[1] / "inbox" / "templates"
    for path in root.rglob("*.html"):
        html = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"inline <script> in {path}"
        assert not re.search(r"\son[a-z]+\s*=", html), f"inline event handler in {path}"


# --- Ids and redirects ------------------------------------------------------------------------

def test_ids_too_big_for_a_column_are_not_found_or_refused(client, account, agent, factory):
    conversation = factory.conversation(account, messages=["hi"])
    assert client.get(f"/accounts/{HUGE}/").status_code == 404
    assert client.get(f"/accounts/{account.id}/c/{HUGE}").status_code == 404
    assert client.post(f"/accounts/{account.id}/messages/{HUGE}/retry").status_code == 404
    assert client.post(f"/accounts/{account.id}/conversations/{conversation.id}/product",
                       data={"product_id": HUGE}).status_code == 400
    assert client.get(f"/accounts/{account.id}/comments/?product={HUGE}").status_code == 400
    assert client.get(f"/accounts/{account.id}/list?product={HUGE}&cursor={HUGE}.{HUGE}").status_code == 200
    assert client.get(f"/accounts/{account.id}/c/{conversation.id}/earlier?before={HUGE}.{HUGE}"
                      ).status_code in (200, 204)


def test_after_a_media_retry_only_a_page_of_the_site_is_a_redirect_target(client, account, agent, factory):
    conversation = factory.conversation(account, messages=["hi"])
    message = factory.message(conversation, "see", attachments=[{"type": "image", "source_url": "https://x.cdninstagram.com/a.jpg",
                                                                  "media_state": "failed"}])
    with client.application.app_context():
        attachment_id = db.session.get(type(message), message.id).attachments[0].id
    url = f"/accounts/{account.id}/media/attachments/{attachment_id}/retry"
    evil = client.post(url, headers={"Referer": "https://evil.example/phish"})
    assert evil.status_code == 302 and "evil.example" not in evil.headers["Location"]
    own = client.post(url, headers={"Referer": f"http://localhost/accounts/{account.id}/"})
    assert own.headers["Location"].endswith(f"/accounts/{account.id}/")
    assert "evil" not in client.post("/login?next=//evil.example/", data={}).headers.get("Location", "")


# --- Sessions -------------------------------------------------------------------------------

def test_logout_ends_copies_of_the_session_and_the_remember_cookie(app, factory, account):
    user = factory.staff_on(account, "agent")
    browser = app.test_client()
    browser.__class__ = InboxClient
    assert browser.post("/login", data={"email": user.email, "password": PASSWORD, "remember": "1"}).status_code == 302
    session_copy = browser.get_cookie("session").value
    remember_copy = browser.get_cookie("remember_token").value
    assert browser.get(f"/accounts/{account.id}/").status_code == 200

    assert browser.post("/logout").status_code == 302

    thief = app.test_client()
    thief.set_cookie("session", session_copy)
    assert thief.get(f"/accounts/{account.id}/").status_code == 302  # to the login page
    thief = app.test_client()
    thief.set_cookie("remember_token", remember_copy)
    assert thief.get(f"/accounts/{account.id}/").status_code == 302


def test_the_csrf_token_changes_when_the_session_does(app, factory, account):
    user = factory.staff_on(account, "agent")
    client = app.test_client()
    client.__class__ = InboxClient
    before = client.csrf_token()
    assert client.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
    after = client.csrf_token()
    assert after != before
    stale = client.post(f"/accounts/{account.id}/conversations/0/read", headers={"X-CSRFToken": before})
    assert stale.status_code == 400  # the token from before the login no longer counts


# --- Throttling behind a proxy ------------------------------------------------------------------

@pytest.fixture
def app_config(app_config):
    app_config["TRUSTED_PROXIES"] = 1
    return app_config


def login(client, email, password, client_ip):
    return client.post("/login", data={"email": email, "password": password},
                       headers={"X-Forwarded-For": client_ip}, environ_base={"REMOTE_ADDR": "10.0.0.1"})


def test_one_visitors_wrong_logins_behind_the_proxy_do_not_lock_out_the_staff(app, client, factory):
    colleague = factory.user("colleague@shop.example")
    for n in range(25):  # a stranger guessing many emails, through the same proxy as everyone
        login(client, f"guess{n}@example.com", "wrong", "203.0.113.7")
    assert login(client, "someone@example.com", "wrong", "203.0.113.7").status_code == 429
    other = app.test_client()
    other.__class__ = InboxClient
    assert login(other, colleague.email, PASSWORD, "198.51.100.20").status_code == 302


def test_a_stranger_cannot_lock_a_known_email_for_long(app, client, factory):
    colleague = factory.user("colleague@shop.example")
    for n in range(30):
        response = login(client, colleague.email, "wrong", f"203.0.113.{n}")
    assert response.status_code == 429
    wait = int(re.search(r"Try again in (\d+) seconds", response.get_data(as_text=True)).group(1))
    assert wait <= app.config["LOGIN_MAX_DELAY_SECONDS"]


# --- Sockets close at once ------------------------------------------------------------------------

def test_logout_closes_the_persons_open_socket_at_once(app, live_server, factory, account):
    user = factory.staff_on(account, "agent")
    browser = logged_in_client(app, user)
    socket = LiveSocket(live_server.url, session_cookie(browser), account=account.id)
    try:
        socket.wait_for('id="live-state"')
        browser.post("/logout")
        assert socket.wait_closed(timeout=3) == 1008  # not a minute later at the next check
    finally:
        socket.close()


def test_removing_a_membership_on_the_staff_page_closes_that_accounts_socket_at_once(app, live_server, factory,
                                                                                  account):
    agent = factory.staff_on(account, "agent")
    admin = factory.user("admin@shop.example", superadmin=True)
    socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=account.id)
    try:
        socket.wait_for('id="live-state"')
        response = logged_in_client(app, admin).post("/admin/staff/revoke",
                                                     data={"user_id": agent.id, "account_id": account.id})
        assert response.status_code == 302
        with app.app_context():
            assert db.session.scalar(select(Membership).where(Membership.user_id == agent.id)) is None
        assert socket.wait_closed(timeout=3) == 1008
    finally:
        socket.close()


@pytest.mark.parametrize("where", ["team page", "cli"])
def test_removing_someone_from_the_team_closes_their_socket_for_that_account_at_once(app, live_server, factory,
                                                                                   account, where):
    agent = factory.staff_on(account, "agent", email="ben@shop.example")
    admin = factory.staff_on(account, "admin")
    socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=account.id)
    try:
        socket.wait_for('id="live-state"')
        if where == "cli":
            result = app.test_cli_runner().invoke(args=["staff", "remove", "ben@shop.example",
                                                        "--account", account.ig_user_id])
            assert result.exit_code == 0, result.output
        else:
            response = logged_in_client(app, admin).post(f"/accounts/{account.id}/team/members/{agent.id}/remove")
            assert response.status_code == 302
        assert socket.wait_closed(timeout=3) == 1008  # not a minute later at the next check
    finally:
        socket.close()
