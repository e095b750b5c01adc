"""Obligations live in the database: Redis down or flushed loses nothing owed (issue 12, items 1–3, 6).

Each test makes the work owed while Redis is down (or flushes Redis after it was queued), then
lets the worker's reconciler look at the database, and checks the customer, the file or the
profile arrived without anyone running a command.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from inbox.extensions import db
from inbox.models import Attachment, Conversation, Identity, JobRun, Message, PeriodicTask, utcnow
from inbox.services import jobruns, obligations, periodic, sending
from tests.support.outage import flush_redis, redis_down


@pytest.fixture
def app_config(app_config):
    app_config["SEND_RETRY_INTERVALS"] = [0]
    app_config["JOB_HEARTBEAT_SECONDS"] = 0.05
    return app_config


@pytest.fixture
def alice(sim_webhooks, connected, run_jobs):
    alice = connected.ig.add_customer("alice", name="Alice")
    assert alice.sends_text("Hello?").delivery.status == 200
    run_jobs()
    return alice


def later(seconds: float = 60):
    """A reconciler pass this far in the future: everything is past its grace."""
    return utcnow() + timedelta(seconds=seconds)


def reconcile(app, seconds: float = 60, reconciler=None):
    with app.app_context():
        return (reconciler or obligations.Reconciler()).run_once(now=later(seconds))


def reply_while_redis_is_down(app, text: str) -> int:
    with app.app_context(), redis_down(app):
        account_id, conversation_id = db.session.execute(select(Conversation.account_id, Conversation.id)).one()
        return sending.queue_reply(account_id, conversation_id, None, text, uuid.uuid4().hex).id


def message(app, message_id) -> Message:
    with app.app_context():
        row = db.session.get(Message, message_id)
        db.session.expunge(row)
        return row


def test_a_reply_typed_while_redis_was_down_is_sent_once_redis_is_back(app, alice, run_jobs, sim):
    message_id = reply_while_redis_is_down(app, "Yes, we have it.")
    assert message(app, message_id).status == "pending"
    assert run_jobs() == 0  # nothing reached the queue

    done = reconcile(app)
    assert done.replies == 1
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, we have it."]
    assert message(app, message_id).status == "sent"

    reconcile(app)  # a second pass owes nothing: sent exactly once
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, we have it."]


def test_a_reply_whose_retry_was_lost_in_a_flush_is_retried_when_due(app, alice, run_jobs, sim):
    message_id = reply_while_redis_is_down(app, "Retry me")
    with app.app_context():  # throttled once: RQ held the retry, then Redis lost it
        db.session.execute(update(Message).where(Message.id == message_id).values(
            error_code=sending.RETRYING, send_attempts=1, updated_at=utcnow()))
        db.session.commit()
    flush_redis(app)
    assert reconcile(app, seconds=-30).replies == 0  # not due yet
    assert reconcile(app).replies == 1
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Retry me"]


def test_a_send_killed_mid_call_ends_failed_with_a_reason_not_sending_forever(app, alice, run_jobs, sim):
    message_id = reply_while_redis_is_down(app, "Did it go?")
    with app.app_context():  # the worker died during the Send API call; its job went with Redis
        db.session.execute(update(Message).where(Message.id == message_id).values(
            error_code=sending.SENDING, send_attempts=1, updated_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    flush_redis(app)
    reconcile(app)
    run_jobs()
    assert sim.calls_to("send") == []  # never resent blindly
    assert sending.status_label(message(app, message_id)) == "Waiting for Instagram"
    assert reconcile(app).expiries == 0  # Instagram's echo may still come
    with app.app_context():  # ... but it did not, for longer than the echo wait
        db.session.execute(update(Message).where(Message.id == message_id).values(
            updated_at=utcnow() - timedelta(seconds=app.config["SEND_ECHO_WAIT_SECONDS"] + 1)))
        db.session.commit()
    flush_redis(app)  # and the job that would have failed it went with Redis
    assert reconcile(app, seconds=0).expiries == 1
    run_jobs()
    failed = message(app, message_id)
    assert failed.status == "failed" and "never confirmed" in failed.error_message


def test_media_and_a_new_customers_profile_owed_while_redis_was_down_arrive(app, sim_webhooks, connected, run_jobs):
    bob = connected.ig.add_customer("bob", name="Bob")
    with redis_down(app):
        assert bob.sends_attachment("image").delivery.status == 200
    with app.app_context():
        assert db.session.scalar(select(Attachment.media_state)) == "pending"
        assert db.session.scalar(select(Identity.id)) is None
    assert run_jobs() == 0

    done = reconcile(app)
    assert (done.media, done.profiles) == (1, 1)
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(Attachment.media_state)) == "stored"
        assert db.session.scalar(select(Identity.username)) == "bob"
        assert {k: v.count for k, v in obligations.oldest().items()} == dict.fromkeys(obligations.KINDS, 0)


def test_periodic_checks_live_in_the_database_and_survive_a_flush(app, run_jobs):
    with app.app_context():
        schedule = periodic.ensure_schedule()
        assert set(schedule) == {"daily_check", "recovery"}
        assert periodic.ensure_schedule() == schedule  # every worker that starts asks again: same rows
        assert all(at > utcnow() for at in schedule.values())
        db.session.execute(update(PeriodicTask).values(next_run_at=utcnow() - timedelta(seconds=5)))
        db.session.commit()
    flush_redis(app)  # whatever RQ held is gone

    assert set(reconcile(app, seconds=0).periodic) == {"daily_check", "recovery"}
    assert set(reconcile(app, seconds=0).periodic) == {"daily_check", "recovery"}  # still one job each
    assert run_jobs() == 2
    with app.app_context():
        rows = {row.name: row for row in db.session.scalars(select(PeriodicTask))}
        assert all(row.next_run_at > utcnow() and row.last_finished_at for row in rows.values())
        assert rows["daily_check"].next_run_at.hour == app.config["ACCOUNT_CHECK_HOUR_UTC"]
        interval = app.config["WEBHOOK_RECOVER_INTERVAL_SECONDS"]
        assert rows["recovery"].next_run_at - utcnow() <= timedelta(seconds=interval)
    assert reconcile(app, seconds=0).periodic == ()
    with app.app_context():  # a check nobody ran for long is overdue work (/healthz says so)
        db.session.execute(update(PeriodicTask).where(PeriodicTask.name == "recovery")
                           .values(next_run_at=utcnow() - timedelta(minutes=10),
                                   last_started_at=utcnow() - timedelta(minutes=15)))
        db.session.commit()
        assert [item.kind for item in obligations.overdue()] == ["check"]


def test_a_refresh_killed_mid_run_is_ended_without_anyone_opening_it(app, connected):
    with app.app_context():
        run = JobRun(kind="refresh_identities", account_id=connected.account.id, rq_job_id="inbox-dead-1",
                     state="running", started_at=utcnow(), created_at=utcnow())
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    reconciler = obligations.Reconciler()
    reconcile(app, reconciler=reconciler)  # dead on the first look: maybe Redis was just flushed
    with app.app_context():
        assert db.session.get(JobRun, run_id).state == "running"

    time.sleep(0.2)
    assert reconcile(app, reconciler=reconciler).runs_ended == 1
    with app.app_context():
        ended = db.session.get(JobRun, run_id)
        assert ended.state == "failed" and ended.error == jobruns.DIED
