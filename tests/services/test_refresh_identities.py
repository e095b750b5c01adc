"""Refresh identities: the button, the RQ job against the simulator, progress, summary, a dead token."""

from __future__ import annotations

import html
import re

import pytest

from inbox.extensions import db, get_redis
from inbox.models import Account, JobRun
from inbox.services import identities
from inbox.live.publish import channel
from tests.support.factory import Factory
from tests.support.stored import count, identity_rows, job_run, self_rows
from tests.support.jobs import failed_jobs
from tests.support.live import drain

HTMX = {"HX-Request": "true"}


@pytest.fixture
def app_config(app_config):
    app_config.update(IDENTITY_REFRESH_CONCURRENCY=4, JOB_PROGRESS_INTERVAL_SECONDS=0)
    return app_config


def _shop_with_customers(app, connected, names: list[str], **flags):
    """Customers who wrote to the shop, each with a conversation in the inbox (no identity yet)."""
    account, shop = connected.account, connected.ig
    customers = []
    for i, name in enumerate(names):
        customer = shop.add_customer(name, name=name.title(), **flags)
        customer.sends_text("hello", deliver=False)
        Factory(app).conversation(account, customer.igsid, messages=[
            {"mid": f"mid-{name}", "text": "hello", "ts": 1_770_000_000_000 + i}])
        customers.append(customer)
    return customers


def _run_id(html: str) -> int:
    return int(re.search(r'id="run-(\d+)"', html).group(1))


def _text(response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def test_refresh_loads_everyone_and_the_people_page_shows_their_usernames(
        app, sim, connected, client, auth, factory, run_jobs):
    account = connected.account
    customers = _shop_with_customers(app, connected, ["alice", "bruno", "chen", "dalia", "emeka"])
    customers[-1].set(available=False)
    # The owner once wrote to herself (self messaging): that thread must not make her a participant.
    factory.conversation(account, account.ig_user_id, messages=[
        {"mid": "mid-self", "text": "note to self", "ts": 1_770_000_000_100, "out": True}])
    auth.login(factory.staff_on(account, "agent"))

    before = client.get(f"/accounts/{account.id}/people/")
    assert "@alice" not in _text(before)
    assert f"Instagram user ·{customers[0].igsid[-4:]}" in _text(before) and "may load the name" in _text(before)

    started = client.post(f"/accounts/{account.id}/runs/refresh-identities", headers=HTMX)
    assert started.status_code == 200 and "Waiting" in _text(started)
    run_id = _run_id(started.get_data(as_text=True))
    assert run_jobs() == 1
    assert failed_jobs(app) == []

    status = client.get(f"/accounts/{account.id}/runs/{run_id}", headers=HTMX)
    assert status.status_code == 286
    assert "Refreshed 4 of 5 people · 1 failed." in _text(status)
    assert "@emeka" not in _text(status) and f"Instagram user ·{customers[-1].igsid[-4:]}" in _text(status)
    assert "isn't available" in _text(status)

    run = job_run(app, run_id)
    assert run.state == "finished" and (run.progress_done, run.progress_total) == (5, 5)
    assert {k: run.summary[k] for k in ("refreshed", "failed", "total")} == {"refreshed": 4, "failed": 1, "total": 5}
    assert run.summary["errors"] == [{"igsid": customers[-1].igsid, "name": f"Instagram user ·{customers[-1].igsid[-4:]}",
                                      "error": run.summary["errors"][0]["error"]}]

    after = _text(client.get(f"/accounts/{account.id}/people/"))
    for name in ("alice", "bruno", "chen", "dalia"):
        assert f"@{name} {name.title()}" in after
    assert "4 of 5 with a name" in after  # the self-thread is not a person
    assert account.ig_user_id not in after
    assert self_rows(app) == []
    assert sorted(r.username for r in identity_rows(app, account.id).values() if r.username) == [
        "alice", "bruno", "chen", "dalia"]


def test_a_second_click_shows_the_running_refresh(app, sim, connected, client, auth, factory, run_jobs):
    account = connected.account
    _shop_with_customers(app, connected, ["fern"])
    auth.login(factory.staff_on(account, "agent"))
    first = client.post(f"/accounts/{account.id}/runs/refresh-identities", headers=HTMX)
    second = client.post(f"/accounts/{account.id}/runs/refresh-identities", headers=HTMX)
    assert _run_id(first.get_data(as_text=True)) == _run_id(second.get_data(as_text=True))
    assert count(app, JobRun) == 1
    assert run_jobs() == 1
    # Finished: the next click starts a new run.
    third = client.post(f"/accounts/{account.id}/runs/refresh-identities", headers=HTMX)
    assert _run_id(third.get_data(as_text=True)) != _run_id(first.get_data(as_text=True))


def test_without_javascript_the_button_leads_to_the_run_page(app, sim, connected, client, auth, factory):
    account = connected.account
    auth.login(factory.staff_on(account, "agent"))
    response = client.post(f"/accounts/{account.id}/runs/refresh-identities")
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "Refresh identities" in _text(page) and "<html" in page.get_data(as_text=True)


def test_progress_is_pushed_live_while_the_refresh_runs(app, sim, connected, run_jobs):
    account = connected.account
    _shop_with_customers(app, connected, ["gia", "hugo", "ines"])
    with app.app_context():
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(account.id))
        run, _ = identities.start_refresh(account.id)
        run_id = run.id
    run_jobs()
    events = drain(pubsub)
    mine = [e for e in events if e["type"] == "job.progress"]
    assert mine and all(e["job_run_id"] == run_id for e in mine)
    # Queued, running, 0/3, each of the 3, finished: the page can follow every step.
    assert len(mine) >= 6
    updated = [e for e in events if e["type"] == "conversation.updated"]
    assert updated == []  # the refresh tells the page once, at the end, instead of once per person


def test_a_dead_token_stops_the_refresh_cleanly_with_a_clear_summary(
        app, sim, connected, client, auth, factory, run_jobs):
    account, shop = connected.account, connected.ig
    _shop_with_customers(app, connected, [f"p{i:02d}" for i in range(20)])
    auth.login(factory.staff_on(account, "agent"))
    started = client.post(f"/accounts/{account.id}/runs/refresh-identities", headers=HTMX)
    run_id = _run_id(started.get_data(as_text=True))
    shop.revoke_token()  # the owner changed her password while the run waited for a worker

    run_jobs()

    assert failed_jobs(app) == []  # a clean stop, not a crash
    run = job_run(app, run_id)
    assert run.state == "failed" and "Reconnect the account" in run.error
    summary = run.summary
    assert summary["refreshed"] == 0 and summary["total"] == 20
    assert summary["not_tried"] > 0 and summary["failed"] + summary["not_tried"] == 20
    assert summary["stopped"] == run.error
    # Far fewer calls than people: each of the 4 threads stopped at its first refusal.
    assert len(sim.calls_to("profile")) <= 4
    with app.app_context():
        assert db.session.get(Account, account.id).status == "reconnect_needed"
    status = client.get(f"/accounts/{account.id}/runs/{run_id}", headers=HTMX)
    assert status.status_code == 286 and "Stopped" in _text(status) and "Reconnect the account" in _text(status)
    assert "Reconnect needed" in _text(client.get(f"/accounts/{account.id}/"))


def test_the_refresh_keeps_to_the_profile_rate_limit(app_config, sim, connected, app, run_jobs):
    # Meta publishes no profile limit; here the simulator enforces one and we are told the same.
    sim.settings.limits.profile = 10.0
    app.config["GRAPH_PROFILE_RATE"] = 10.0
    app.config["IDENTITY_REFRESH_CONCURRENCY"] = 8
    account = connected.account
    _shop_with_customers(app, connected, [f"q{i:02d}" for i in range(25)])
    with app.app_context():
        run, _ = identities.start_refresh(account.id)
        run_id = run.id
    run_jobs()
    run = job_run(app, run_id)
    assert run.state == "finished" and run.summary["refreshed"] == 25
    calls = sim.calls_to("profile")
    assert len(calls) == 25 and [c for c in calls if c.code is not None] == []


def test_refresh_from_the_command_line(app, runner, sim, connected):
    account = connected.account
    _shop_with_customers(app, connected, ["jude", "kemal"])
    result = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id])
    assert result.exit_code == 0, result.output
    assert "Refreshed 2 of 2, 0 failed." in result.output
    assert {r.username for r in identity_rows(app, account.id).values()} == {"jude", "kemal"}
    queued = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id, "--queue"])
    assert "Queued run" in queued.output
    again = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id])
    assert "already going" in again.output  # the queued one is the account's refresh
    assert runner.invoke(args=["identities", "refresh", "--account", "1234"]).exit_code != 0


def test_participants_are_the_customers_and_recent_writers_never_the_account(app, factory):
    account = factory.account()
    factory.conversation(account, "5550001", messages=[
        {"mid": "a", "ts": 1_000_000_000_000, "text": "long ago"},
        {"mid": "b", "ts": 1_000_000_000_500, "text": "reply", "out": True}])
    factory.conversation(account, account.ig_user_id)
    factory.conversation(factory.account(), "5550002")  # another account's customer
    with app.app_context():
        assert identities.participant_ids(account.id) == ["5550001"]
