"""The daily account check against the simulator: token refresh, webhook subscription, dead tokens, the schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from inbox.extensions import db
from inbox.models import Account, Message, PeriodicTask, utcnow
from inbox.services import periodic
from inbox.queue import all_queues, enqueue
from inbox.services.products import assignment, catalogue
from inbox.services.accounts import access_token
from inbox.services.accounts_maintenance import refresh_tokens
from inbox.services.graph import WEBHOOK_FIELDS, GraphClient
from tests.support.sim import connect_account
from tests.support.waiting import wait_until

NEEDED = set(WEBHOOK_FIELDS["instagram"])


def set_token_times(app, account_id: int, *, expires_in: timedelta | None, refreshed_ago: timedelta | None):
    """What the inbox knows about the token: when it expires, when it was last renewed."""
    now = utcnow()
    with app.app_context():
        db.session.execute(update(Account).where(Account.id == account_id).values(
            token_expires_at=now + expires_in if expires_in is not None else None,
            token_refreshed_at=now - refreshed_ago if refreshed_ago is not None else None))
        db.session.commit()


def load(app, account_id: int) -> Account:
    with app.app_context():
        account = db.session.get(Account, account_id)
        db.session.expunge(account)
        return account


def run_check(app):
    with app.app_context():
        return refresh_tokens()


def test_a_token_close_to_expiry_is_refreshed(sim, app, connected):
    shop, account_id = connected.ig, connected.account.id
    set_token_times(app, account_id, expires_in=timedelta(days=10), refreshed_ago=timedelta(days=50))
    shop.age_token(50 * 24 * 3600)
    old_token = shop.token

    [check] = run_check(app)

    assert check.refreshed and not check.errors
    assert len(sim.calls_to("refresh_token")) == 1
    account = load(app, account_id)
    with app.app_context():
        assert access_token(account) == shop.token != old_token
        assert GraphClient.for_account(account).me(fields="user_id")["user_id"] == shop.ig_user_id
    assert abs(account.token_expires_at - (utcnow() + timedelta(days=60))) < timedelta(minutes=5)
    assert utcnow() - account.token_refreshed_at < timedelta(minutes=5)


@pytest.mark.parametrize("expires_in,refreshed_ago", [
    (timedelta(days=50), timedelta(days=10)),  # far from expiry
    (None, timedelta(hours=1)),  # expiry unknown, but Meta refreshes only day-old tokens
])
def test_a_fresh_token_is_left_alone_but_the_subscription_is_checked(sim, app, connected, expires_in,
                                                                      refreshed_ago):
    account_id = connected.account.id
    set_token_times(app, account_id, expires_in=expires_in, refreshed_ago=refreshed_ago)

    [check] = run_check(app)

    assert not check.refreshed and check.subscribed and not check.errors
    assert sim.calls_to("refresh_token") == []
    assert load(app, account_id).webhook_checked_at is not None


def test_a_token_meta_will_not_refresh_yet_keeps_working(sim, app, connected):
    # A token added by hand (no expiry known) that Meta issued less than a day ago.
    set_token_times(app, connected.account.id, expires_in=None, refreshed_ago=None)

    [check] = run_check(app)

    assert not check.refreshed and "less than 24 hours old" in check.errors[0]
    assert check.subscribed
    account = load(app, connected.account.id)
    assert account.status == "active"
    with app.app_context():
        assert access_token(account) == connected.ig.token


def test_a_missing_webhook_subscription_is_restored(sim, app, connected):
    connected.ig.unsubscribe()  # Meta dropped it after failed deliveries

    [check] = run_check(app)

    assert sorted(check.restored_fields) == sorted(NEEDED)
    assert connected.ig.subscribed_fields >= NEEDED
    assert "webhook subscription restored" in check.describe()


@pytest.mark.parametrize("death", ["revoked", "expired"])
def test_a_dead_token_marks_reconnect_needed_and_the_inbox_shows_the_banner(sim, app, client, auth, factory,
                                                                            connected, death):
    shop, account = connected.ig, connected.account
    set_token_times(app, account.id, expires_in=timedelta(days=3), refreshed_ago=timedelta(days=57))
    shop.age_token(57 * 24 * 3600)
    shop.revoke_token() if death == "revoked" else shop.expire_token()

    [check] = run_check(app)

    assert check.reconnect_needed
    stored = load(app, account.id)
    assert stored.status == "reconnect_needed"
    assert ("password" in stored.status_reason) if death == "revoked" else ("expired" in stored.status_reason)
    agent = factory.staff_on(account, "agent")
    auth.login(agent)
    page = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    assert "Reconnect needed." in page and "New messages are still received" in page
    assert "/admin/connect" not in page  # agents cannot reconnect; the banner tells them who can

    # The next daily run leaves it alone: only a reconnect can help.
    calls = len(sim.calls)
    assert run_check(app) == []
    assert len(sim.calls) == calls


def test_site_admins_see_reconnect_in_the_banner_and_on_the_accounts_page(sim, app, client, auth, factory,
                                                                         connected):
    connected.ig.revoke_token()
    run_check(app)
    boss = factory.user(superadmin=True)
    factory.grant(boss, connected.account, "admin")
    auth.login(boss)

    inbox = client.get(f"/accounts/{connected.account.id}/").get_data(as_text=True)
    assert "Reconnect needed." in inbox and 'href="/admin/connect">Reconnect</a>' in inbox
    overview = client.get("/admin/accounts").get_data(as_text=True)
    assert "Reconnect needed" in overview and ">Reconnect</button>" in overview
    assert "password" in overview  # the reason Meta gave


def test_one_failing_account_does_not_stop_the_others(sim, app, factory, connected):
    other = connect_account(factory, sim, "second.shop")
    connected.ig.revoke_token()
    other.ig.unsubscribe()

    checks = {c.account_id: c for c in run_check(app)}

    assert checks[connected.account.id].reconnect_needed
    assert checks[other.account.id].restored_fields and other.ig.subscribed_fields >= NEEDED
    assert load(app, other.account.id).status == "active"


def test_meta_being_down_is_reported_and_changes_nothing(sim, app, connected):
    app.config["GRAPH_RETRY_BACKOFF_SECONDS"] = 0.01
    sim.fail_next("subscribed_apps", 2, times=10)

    [check] = run_check(app)

    assert check.errors and "webhook subscription check failed" in check.errors[0]
    account = load(app, connected.account.id)
    assert account.status == "active" and account.webhook_checked_at is None


def test_facebook_page_tokens_are_not_refreshed(sim, app, factory):
    page = connect_account(factory, sim, "page.shop", flavour="facebook")
    set_token_times(app, page.account.id, expires_in=timedelta(days=2), refreshed_ago=timedelta(days=58))
    page.ig.unsubscribe()

    [check] = run_check(app)

    assert not check.refreshed and sim.calls_to("refresh_token") == []
    assert check.restored_fields and page.ig.subscribed_fields


def test_check_now_on_the_accounts_page(sim, app, client, auth, factory, connected, run_jobs):
    connected.ig.unsubscribe()
    auth.login(factory.user(superadmin=True))
    page = client.get("/admin/accounts").get_data(as_text=True)
    assert "Not confirmed" in page and "Check now" in page

    response = client.post("/admin/accounts/check", data={"account_id": connected.account.id})
    client.post("/admin/accounts/check", data={"account_id": connected.account.id})  # a double click

    assert response.status_code == 302
    assert run_jobs() == 1
    assert connected.ig.subscribed_fields >= NEEDED
    page = client.get("/admin/accounts").get_data(as_text=True)
    assert "Subscribed" in page and "Not confirmed" not in page


def test_a_token_found_dead_while_assigning_and_check_now_are_one_check(app, client, auth, factory, sim_webhooks,
                                                                       connected):
    """The same account's check, asked for by product assignment and by "Check now", is one job."""
    account, shop = connected.account, connected.ig
    own = shop.add_post("Restocked BS-2")
    alice = shop.add_customer("alice")
    sent = alice.shares_post(own, caption="")  # no caption: assignment reads the post from Meta
    sim_webhooks.fail_next("media", 190, 460)  # ... and Meta refuses the token
    with app.app_context():
        catalogue.create_product(account.id, name="Blue Scarf", sku="BS-2")
        message_id = db.session.scalar(select(Message.id).where(Message.mid == sent.mid))
        assignment.assign_from_message(message_id)  # what the assignment job runs
    auth.login(factory.user(superadmin=True))
    client.post("/admin/accounts/check", data={"account_id": account.id})  # "Check now" meanwhile

    with app.app_context():
        checks = [(q.name, job_id) for q in all_queues() for job_id in q.job_ids if "check" in job_id]
    assert len(checks) == 1, checks


# --- The schedule -------------------------------------------------------------------------

def next_daily(app) -> datetime | None:
    with app.app_context():
        row = db.session.get(PeriodicTask, "daily_check")
        return row.next_run_at if row else None


def test_the_daily_check_is_due_once_a_day_at_its_hour(app):
    morning = datetime(2030, 5, 6, 3, 0, tzinfo=timezone.utc)
    noon = datetime(2030, 5, 6, 12, 0, tzinfo=timezone.utc)
    with app.app_context():
        assert periodic.next_slot("daily_check", morning).isoformat() == "2030-05-06T04:00:00+00:00"
        assert periodic.next_slot("daily_check", noon).isoformat() == "2030-05-07T04:00:00+00:00"
        for _ in range(3):  # every worker that starts asks again: one row
            periodic.ensure_schedule(now=noon)
        assert db.session.scalar(select(func.count()).select_from(PeriodicTask)
                                 .where(PeriodicTask.name == "daily_check")) == 1


def test_each_daily_run_moves_the_next_one_to_tomorrow(sim, app, connected, run_jobs):
    connected.ig.unsubscribe()
    with app.app_context():
        enqueue("inbox.tasks.daily_check", queue="low")
    assert run_jobs() == 1

    assert connected.ig.subscribed_fields >= NEEDED
    when = next_daily(app)
    assert timedelta(0) < when - datetime.now(timezone.utc) <= timedelta(days=1)
    assert when.hour == app.config["ACCOUNT_CHECK_HOUR_UTC"]


def test_python_worker_py_runs_the_daily_check_without_cron(sim, app, app_config, connected, tmp_path):
    connected.ig.unsubscribe()
    with app.app_context():
        # A run that came due while no worker was up (the day before, seen from now).
        periodic.ensure_schedule()
        db.session.execute(update(PeriodicTask).where(PeriodicTask.name == "daily_check")
                           .values(next_run_at=utcnow() - timedelta(days=1)))
        db.session.commit()
    env = {**os.environ, "INBOX_INSTANCE_PATH": str(tmp_path / "instance"), "GRAPH_API_BASE": sim.url,
           **{k: str(app_config[k]) for k in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "SECRET_KEY",
                                              "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN")}}
    worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[2] / "worker.py")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: connected.ig.subscribed_fields, timeout=60, what="the worker's account check")
        assert connected.ig.subscribed_fields >= NEEDED  # the worker's reconciler started it
        wait_until(lambda: next_daily(app) > utcnow(), timeout=30, what="the run to name tomorrow's")
        assert next_daily(app) - utcnow() <= timedelta(days=1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert "daily_check" in output, output
