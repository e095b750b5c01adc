"""Connecting an Instagram account through Business Login, against the simulator over real HTTP.

The admin's browser is the test client; Meta's authorization window is the simulator's
`/oauth/authorize` (reached with requests, as the browser would follow the redirect);
the job that redeems the code talks to the simulator's token, /me and subscribed_apps
endpoints over real HTTP.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Account, JobRun, Membership, utcnow
from inbox.services.accounts import access_token
from inbox.services.graph import WEBHOOK_FIELDS
from tests.support.factory import PASSWORD

CALLBACK = "http://localhost/admin/connect/callback"


@pytest.fixture
def admin(factory, auth):
    """A site administrator, logged in."""
    user = factory.user("olga@shop.example", name="Olga", superadmin=True)
    auth.login(user)
    return user


def start(client) -> str:
    """Press "Continue with Instagram": the authorize URL the browser is sent to."""
    response = client.post("/admin/connect")
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def authorize(url: str) -> str:
    """The person in Instagram's window answers; where Instagram sends the browser back."""
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def come_back(client, location: str):
    """The browser follows Instagram's redirect to our callback (the #_ fragment stays in the browser)."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def connect(client, run_jobs) -> str:
    """The whole flow; returns the text of the run page once the job is done."""
    back = come_back(client, authorize(start(client)))
    assert back.status_code == 302
    run_url = back.headers["Location"]
    assert run_jobs() == 1
    return client.get(run_url).get_data(as_text=True)


def accounts(app) -> list[Account]:
    with app.app_context():
        rows = list(db.session.scalars(select(Account).order_by(Account.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def test_connect_flow_stores_the_account_subscribes_and_makes_the_admin(sim, app, client, admin, run_jobs):
    shop = sim.add_account("bloom.studio", name="Bloom Studio", subscribed_fields=())  # new to this app

    url = start(client)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{sim.url}/oauth/authorize?")
    assert query["client_id"] == [sim.settings.app_id]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["instagram_business_basic,instagram_business_manage_messages"]
    assert len(query["state"][0]) >= 32

    back = come_back(client, authorize(url))
    assert back.status_code == 302
    run_url = back.headers["Location"]
    waiting = client.get(run_url).get_data(as_text=True)
    assert "Connecting…" in waiting and 'hx-trigger="every 1s"' in waiting
    assert run_jobs() == 1
    done = client.get(run_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Connected @bloom.studio" in done and "hx-trigger" not in done  # polling stops

    [account] = accounts(app)
    # The webhook id is /me user_id; the app-scoped /me id is something else.
    assert account.ig_user_id == shop.ig_user_id != shop.state.app_scoped_id
    assert (account.username, account.name, account.status) == ("bloom.studio", "Bloom Studio", "active")
    assert shop.token not in account.access_token_encrypted
    with app.app_context():
        assert access_token(account) == shop.token  # the long-lived token, encrypted at rest
        assert db.session.scalar(select(Membership.role).where(Membership.account_id == account.id,
                                                               Membership.user_id == admin.id)) == "admin"
        run = db.session.scalars(select(JobRun)).one()
        assert run.account_id == account.id and "code" not in run.summary
    assert abs(account.token_expires_at - (utcnow() + timedelta(days=60))) < timedelta(minutes=5)
    assert shop.subscribed_fields == set(WEBHOOK_FIELDS["instagram"])
    assert account.webhook_checked_at is not None
    assert [c.endpoint for c in sim.calls] == ["oauth_token", "exchange_token", "me", "subscribed_apps",
                                               "subscribed_apps"]
    # The admin lands in the new account's inbox.
    assert "@bloom.studio" in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_denied_authorization_connects_nothing(sim, app, client, admin, run_jobs):
    sim.add_account("bloom.studio")
    sim.settings.authorize_answer = "deny"

    back = authorize(start(client))
    assert parse_qs(urlsplit(back).query)["error"] == ["access_denied"]
    page = come_back(client, back)

    assert page.status_code == 200
    assert "The authorization was cancelled on Instagram" in page.get_data(as_text=True)
    assert run_jobs() == 0 and accounts(app) == []
    assert sim.calls_to("oauth_token") == []


def test_a_state_that_does_not_match_the_session_is_refused(sim, app, client, admin, run_jobs):
    sim.add_account("bloom.studio")
    back = authorize(start(client))
    tampered = back.replace("state=", "state=x")

    page = come_back(client, tampered)

    assert page.status_code == 400
    assert "does not belong to your session" in page.get_data(as_text=True)
    # The pending state is used up by the attempt: the genuine link no longer works either.
    assert come_back(client, back).status_code == 400
    assert run_jobs() == 0 and accounts(app) == [] and sim.calls_to("oauth_token") == []


def test_another_persons_callback_link_cannot_connect_in_my_session(sim, app, factory, client, admin, run_jobs):
    """Login CSRF: an attacker's own code and state, opened in the admin's browser, connect nothing."""
    sim.add_account("attacker.shop")
    attacker = app.test_client()  # another browser, another site administrator
    attacker.post("/login", data={"email": factory.user(superadmin=True).email, "password": PASSWORD})
    their_link = authorize(start(attacker))

    start(client)  # even with a pending flow of the admin's own
    page = come_back(client, their_link)

    assert page.status_code == 400 and "does not belong to your session" in page.get_data(as_text=True)
    assert run_jobs() == 0 and accounts(app) == []


def test_a_callback_link_works_once(sim, app, client, admin, run_jobs):
    sim.add_account("bloom.studio")
    back = authorize(start(client))
    assert come_back(client, back).status_code == 302
    assert come_back(client, back).status_code == 400  # reloading the callback does not start a second run
    assert run_jobs() == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(JobRun)) == 1
    assert len(accounts(app)) == 1


@pytest.mark.parametrize("spoil", ["expired", "bogus"])
def test_an_expired_or_bogus_code_fails_with_a_clear_error(sim, app, client, admin, run_jobs, spoil):
    sim.add_account("bloom.studio")
    back = authorize(start(client))
    if spoil == "expired":
        sim.advance(minutes=11)  # the simulator's codes live 10 minutes
    else:
        back = back.replace("code=", "code=not-a-real-code")
    run_url = come_back(client, back).headers["Location"]
    run_jobs()

    page = client.get(run_url).get_data(as_text=True)
    assert "Could not connect" in page
    assert "Instagram refused the authorization code" in page and "Start again" in page
    assert accounts(app) == []
    with app.app_context():
        run = db.session.scalars(select(JobRun)).one()
        assert run.state == "failed" and "code" not in run.summary


def test_a_failing_me_call_fails_with_a_clear_error(sim, app, client, admin, run_jobs):
    sim.add_account("bloom.studio")
    sim.fail_next("me", 10, message="(#10) Application does not have permission for this action")

    page = connect(client, run_jobs)

    assert "Could not connect" in page
    assert "reading the account (/me) failed" in page and "does not have permission" in page
    assert accounts(app) == []


def test_a_failed_subscription_still_connects_with_a_warning(sim, app, client, admin, run_jobs):
    shop = sim.add_account("bloom.studio", subscribed_fields=())
    sim.fail_next("subscribed_apps", 200, message="(#200) Permissions error")

    page = connect(client, run_jobs)

    assert "Connected @bloom.studio" in page and "The webhook subscription failed" in page
    [account] = accounts(app)
    assert account.webhook_fields is None and shop.subscribed_fields == set()


def test_reconnecting_updates_the_same_account(sim, app, client, admin, run_jobs, connected, factory):
    from inbox.services.accounts_maintenance import refresh_tokens

    shop = connected.ig
    old_token = shop.token
    agent = factory.staff_on(connected.account, "agent")
    shop.revoke_token()  # the owner changed their password
    shop.unsubscribe()
    with app.app_context():
        refresh_tokens()
    [before] = accounts(app)
    assert before.status == "reconnect_needed"

    page = connect(client, run_jobs)

    assert f"Reconnected @{shop.username}" in page
    [after] = accounts(app)
    assert after.id == before.id and after.ig_user_id == shop.ig_user_id
    assert after.status == "active" and after.status_reason is None
    with app.app_context():
        assert access_token(after) == shop.token != old_token
        roles = dict(db.session.execute(select(Membership.user_id, Membership.role)
                                        .where(Membership.account_id == after.id)).all())
    assert roles == {agent.id: "agent", admin.id: "admin"}
    assert shop.subscribed_fields == set(WEBHOOK_FIELDS["instagram"])


def test_missing_app_settings_are_explained(app_config, client, admin):
    assert not app_config.get("META_APP_ID")
    page = client.get("/admin/connect").get_data(as_text=True)
    assert "Instagram login is not set up yet" in page and "META_INSTAGRAM_APP_ID" in page
    response = client.post("/admin/connect")
    assert response.status_code == 400


def test_the_connect_page_shows_what_to_register_at_meta(sim, client, admin):
    page = client.get("/admin/connect").get_data(as_text=True)
    assert CALLBACK in page and "http://localhost/webhooks/instagram" in page
    assert "instagram_business_manage_messages" in page and "Continue with Instagram" in page


def test_the_redirect_uri_follows_the_public_base_url(sim, app, client, admin):
    app.config["PUBLIC_BASE_URL"] = "https://inbox.shop.example/"
    url = start(client)
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == ["https://inbox.shop.example/admin/connect/callback"]


def test_the_callback_needs_a_login(sim, client, factory):
    factory.user(superadmin=True)
    response = client.get("/admin/connect/callback?code=abc&state=def")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
