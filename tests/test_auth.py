"""Login, setup, CSRF, throttling and who may see which account."""

from __future__ import annotations

import re

import pytest
from flask import url_for

from inbox.auth import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS
from tests.support.factory import PASSWORD


def _get_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS:
            continue
        if "GET" in rule.methods:
            yield rule


def _sample_url(app, rule, **values):
    args = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        args[name] = values.get(name, 1 if "Integer" in type(converter).__name__ else "x")
    with app.test_request_context():
        return url_for(rule.endpoint, **args)


def test_every_page_but_login_and_setup_needs_a_login(app, client, factory):
    factory.user()  # setup is done, so pages ask for a login instead
    checked = 0
    for rule in _get_rules(app):
        url = _sample_url(app, rule)
        response = client.get(url)
        assert response.status_code in (302, 401), f"{url} answered {response.status_code} without a login"
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/login"), url
        checked += 1
    assert checked >= 2


def test_htmx_requests_without_a_login_are_told_to_navigate(client, factory):
    account = factory.account()
    factory.user()
    response = client.get(f"/accounts/{account.id}/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


def test_setup_creates_the_first_admin_and_then_disappears(client, app):
    # With no staff at all, every page leads to setup.
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/setup"
    page = client.get("/setup").get_data(as_text=True)
    assert "Create administrator" in page

    response = client.post("/setup", data={"email": "Owner@Shop.example", "name": "Olga",
                                           "password": PASSWORD, "password_confirm": PASSWORD})
    assert response.status_code == 302
    # Logged in straight away, as a site administrator with no account yet.
    home = client.get("/").get_data(as_text=True)
    assert "No Instagram account yet" in home
    from inbox.models import StaffUser
    from inbox.extensions import db
    with app.app_context():
        user = db.session.query(StaffUser).one()
        assert user.email == "owner@shop.example" and user.is_superadmin and user.password_hash != PASSWORD

    assert client.get("/setup").status_code == 404
    again = client.post("/setup", data={"email": "intruder@example.com", "password": PASSWORD,
                                        "password_confirm": PASSWORD})
    assert again.status_code == 404
    with app.app_context():
        assert db.session.query(StaffUser).count() == 1


def test_setup_rejects_a_short_or_mismatched_password(client):
    response = client.post("/setup", data={"email": "a@b.example", "password": "short", "password_confirm": "short"})
    assert response.status_code == 400
    assert "at least 10 characters" in response.get_data(as_text=True)
    response = client.post("/setup", data={"email": "a@b.example", "password": PASSWORD, "password_confirm": PASSWORD + "x"})
    assert response.status_code == 400
    assert "differ" in response.get_data(as_text=True)


def test_login_with_the_right_password_opens_the_inbox(client, auth, factory):
    account = factory.account(username="redshop")
    user = factory.staff_on(account, "agent", name="Ana")
    response = auth.login(user)
    assert response.status_code == 302
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "@redshop" in page and "Ana" in page


def test_wrong_password_is_refused(client, auth, factory):
    user = factory.user()
    response = auth.login(user, password="wrong password!")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_unknown_email_gets_the_same_answer_as_a_wrong_password(client):
    client.post("/setup", data={"email": "boss@example.com", "password": PASSWORD, "password_confirm": PASSWORD})
    client.post("/logout")
    response = client.post("/login", data={"email": "nobody@example.com", "password": PASSWORD})
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)


def test_repeated_failures_lock_the_login_for_a_while(client, auth, factory, app):
    user = factory.user()
    statuses = [auth.login(user, password=f"wrong-{i}-password").status_code for i in range(app.config["LOGIN_MAX_FAILURES"])]
    assert statuses[:-1] == [401] * (len(statuses) - 1)
    assert statuses[-1] == 429
    # Even the right password waits now.
    response = auth.login(user)
    assert response.status_code == 429
    assert re.search(r"Try again in \d+ seconds", response.get_data(as_text=True))


def test_next_parameter_only_leads_within_the_site(client, factory):
    user = factory.user()
    response = client.post("/login?next=https://evil.example/x", data={"email": user.email, "password": PASSWORD})
    assert response.headers["Location"] == "/"
    client.post("/logout")
    response = client.post("/login?next=//evil.example/x", data={"email": user.email, "password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_state_changing_requests_need_the_csrf_token(client, factory):
    user = factory.user()
    response = client.post("/login", data={"email": user.email, "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # not logged in
    # The token in the htmx header is accepted like the form field.
    assert client.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 302
    response = client.post("/logout", csrf=False)
    assert response.status_code == 400
    assert client.get("/", follow_redirects=True).status_code == 200  # still logged in


def test_password_change_ends_other_sessions(app, client, factory):
    user = factory.user()
    client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert client.get("/").status_code == 200
    from inbox.services.staff import set_password
    with app.app_context():
        set_password(user.id, "a brand new password")
    assert client.get("/").status_code == 302


def test_session_cookie_is_http_only_and_same_site(client, factory):
    user = factory.user()
    response = client.post("/login", data={"email": user.email, "password": PASSWORD, "remember": "1"})
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    remember = next(c for c in cookies if c.startswith("remember_token="))
    assert "HttpOnly" in remember


def test_an_agent_of_one_account_gets_404_for_every_url_of_another(app, client, auth, factory):
    mine = factory.account(username="mine")
    theirs = factory.account(username="theirs")
    agent = factory.staff_on(mine, "agent")
    auth.login(agent)

    scoped = [rule for rule in app.url_map.iter_rules() if "account_id" in rule.arguments]
    assert scoped, "no account-scoped URLs found"
    for rule in scoped:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url = _sample_url(app, rule, account_id=theirs.id)
            response = client.open(url, method=method)
            assert response.status_code == 404, f"{method} {url} answered {response.status_code}"
            assert "theirs" not in response.get_data(as_text=True)
    # The agent's own account opens.
    assert client.get(f"/accounts/{mine.id}/").status_code == 200


def test_account_switcher_lists_only_my_accounts(client, auth, factory):
    first = factory.account(username="first_shop")
    second = factory.account(username="second_shop")
    factory.account(username="not_mine")
    user = factory.staff_on(first, "agent")
    factory.grant(user, second, "admin")
    auth.login(user)
    page = client.get(f"/accounts/{second.id}/").get_data(as_text=True)
    assert "@first_shop" in page and "@second_shop" in page
    assert "not_mine" not in page


@pytest.mark.parametrize("path", ["/static/app.css", "/healthz"])
def test_static_and_health_need_no_login(client, path):
    assert client.get(path).status_code in (200, 503)
