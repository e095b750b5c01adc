"""`inbox doctor`: exit 0 only when every check passes; each failure says how to fix it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from inbox.extensions import db
from inbox.models import Account, Message, WebhookDelivery, utcnow
from inbox.services.accounts_maintenance import check_account
from inbox.worker import heartbeat


@pytest.fixture
def worker_alive(app):
    """The worker's own heartbeat, beating in a thread for the test."""
    stop = threading.Event()
    beat = threading.Thread(target=heartbeat, args=(app, "doctor-test", stop), daemon=True)
    beat.start()
    yield
    stop.set()
    beat.join(timeout=5)


@pytest.fixture
def healthy(app, sim, connected, live_server, worker_alive):
    """A connected account subscribed to its webhooks, a worker, PUBLIC_BASE_URL answering."""
    app.config["PUBLIC_BASE_URL"] = live_server.url
    with app.app_context():
        check_account(connected.account.id)  # the daily check subscribes the webhook fields
    return connected


def doctor(runner):
    result = runner.invoke(args=["doctor"])
    lines = result.output.splitlines()
    return result.exit_code, lines


def test_everything_in_order_passes(runner, healthy):
    status, lines = doctor(runner)
    assert status == 0, "\n".join(lines)
    assert not [line for line in lines if line.startswith("FAIL")]
    names = " ".join(lines)
    for check in ("secrets", "migrations", "redis", "worker", "webhook deliveries", "work owed", "PUBLIC_BASE_URL",
                  "media folder", "@shop token", "@shop webhooks"):
        assert check in names


def test_each_problem_fails_with_a_fix(app, runner, healthy, sim):
    healthy.ig.unsubscribe()
    healthy.ig.revoke_token()
    with app.app_context():
        db.session.add(WebhookDelivery(body=b"{}", status="received", received_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
    app.config["PUBLIC_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens there
    status, lines = doctor(runner)
    assert status == 1
    failed = {line.split(":")[0].removeprefix("FAIL").strip() for line in lines if line.startswith("FAIL")}
    assert failed == {"@shop token", "@shop webhooks", "webhook deliveries", "work owed", "PUBLIC_BASE_URL"}
    fixes = [line for line in lines if line.strip().startswith("fix:")]
    assert len(fixes) == 5 and all(len(f) > 20 for f in fixes)


def test_a_token_near_expiry_fails(app, runner, healthy):
    with app.app_context():
        db.session.execute(update(Account).values(token_expires_at=utcnow() + timedelta(days=2)))
        db.session.commit()
    status, lines = doctor(runner)
    assert status == 1 and any(line.startswith("FAIL  @shop token: expires") for line in lines)


def test_production_needs_https_and_its_secrets(app, runner, account):
    app.config.update(INBOX_ENV="production", PUBLIC_BASE_URL="http://inbox.example.com", META_VERIFY_TOKEN=None)
    status, lines = doctor(runner)
    assert status == 1
    text = "\n".join(lines)
    assert "FAIL  secrets: missing: META_VERIFY_TOKEN" in text
    assert "FAIL  PUBLIC_BASE_URL: http://inbox.example.com is not https" in text
    assert "FAIL  worker: no worker heartbeat" in text and "inbox worker" in text


def test_work_owed_and_overdue_fails_and_says_who_picks_it_up(app, runner, healthy, factory):
    conversation = factory.conversation(healthy.account, messages=["hi"])
    factory.message(conversation, "Sending… for ten minutes", out=True, status="pending")
    with app.app_context():
        db.session.execute(update(Message).where(Message.status == "pending")
                           .values(created_at=utcnow() - timedelta(minutes=10),
                                   updated_at=utcnow() - timedelta(minutes=10)))
        db.session.commit()
    status, lines = doctor(runner)
    assert status != 0
    [line] = [line for line in lines if "work owed" in line]
    assert line.startswith("FAIL") and "1 reply owed" in line, lines
    assert any("reconciler" in other for other in lines)
