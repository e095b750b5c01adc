"""Staff replies through the simulator: queued, sent once, reconciled with the echo, errors typed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from inbox.extensions import db
from inbox.models import Account, Conversation, Message, utcnow
from inbox.services import sending
from tests.support.jobs import failed_jobs


@pytest.fixture
def app_config(app_config):
    app_config["SEND_RETRY_INTERVALS"] = [0]  # a retry runs in the same burst of jobs
    return app_config


@pytest.fixture
def alice(sim_webhooks, connected, run_jobs):
    """A customer who wrote to the shop through a real webhook (her profile fetched)."""
    alice = connected.ig.add_customer("alice", name="Alice")
    assert alice.sends_text("Do you have the blue one?").delivery.status == 200
    run_jobs()  # her profile
    return alice


def conversation_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id))


def reply(app, text="Yes, in M and L.", token=None, user_id=None) -> int:
    with app.app_context():
        account_id = db.session.scalar(select(Conversation.account_id))
        return sending.queue_reply(account_id, conversation_id(app), user_id, text, token or uuid.uuid4().hex).id


def outgoing(app) -> list[tuple]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            select(Message.id, Message.mid, Message.sender_kind, Message.status,
                   Message.text, Message.error_code)
            .where(Message.direction == "out").order_by(Message.id))]


def row(app, message_id) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        db.session.expunge(message)
        return message


def test_a_reply_reaches_the_customer_and_its_echo_confirms_it(app, alice, run_jobs, sim):
    message_id = reply(app)
    pending = row(app, message_id)
    assert pending.status == "pending" and pending.mid is None and sending.status_label(pending) == "Sending…"
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, in M and L."]
    sent = row(app, message_id)
    assert sent.status == "sent" and sent.mid == alice.received[0].mid and sent.error_code is None
    assert len(outgoing(app)) == 1  # the echo confirmed our row; no second message
    with app.app_context():
        conversation = db.session.get(Conversation, conversation_id(app))
        assert conversation.last_message_preview == "Yes, in M and L."
        assert conversation.last_message_sender_kind == "staff" and conversation.unread_count == 0


def test_the_echo_arriving_before_the_send_api_answers_is_one_message(app, alice, run_jobs, sim):
    sim.faults.echo_before_response = True
    message_id = reply(app)
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, in M and L."]
    rows = outgoing(app)
    assert len(rows) == 1 and rows[0][0] == message_id and rows[0][3] == "sent" and rows[0][2] == "staff"


def test_a_double_submit_is_one_message(app, alice, run_jobs, sim):
    token = uuid.uuid4().hex
    first = reply(app, token=token)
    second = reply(app, token=token)
    assert first == second
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, in M and L."]
    assert len(outgoing(app)) == 1


def test_a_token_from_another_conversation_is_refused(app, connected, alice, factory, sim):
    bob = connected.ig.add_customer("bob")
    bob.sends_text("hello")
    token = uuid.uuid4().hex
    reply(app, token=token)
    with app.app_context():
        other = db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == bob.igsid))
        with pytest.raises(sending.SendRefused, match="another conversation"):
            sending.queue_reply(connected.account.id, other, None, "hi", token)


def test_two_identical_replies_are_two_messages(app, alice, run_jobs, sim):
    reply(app, "Thanks!")
    reply(app, "Thanks!")
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Thanks!", "Thanks!"]
    rows = outgoing(app)
    assert [r[3] for r in rows] == ["sent", "sent"] and rows[0][1] != rows[1][1]


@pytest.mark.parametrize("text, reason", [
    ("   ", "Write a message first."),
    ("é" * 501, "1,002 bytes; Instagram accepts at most 1,000"),
])
def test_empty_or_oversized_text_is_refused_with_a_reason(app, alice, text, reason):
    with pytest.raises(sending.SendRefused, match=reason):
        reply(app, text)
    assert outgoing(app) == []


def test_exactly_1000_bytes_is_accepted(app, alice, run_jobs, sim):
    reply(app, "é" * 500)
    run_jobs()
    assert alice.received_texts == ["é" * 500]


def test_outside_the_24_hour_window_the_reply_is_refused(app, alice):
    with app.app_context():
        db.session.execute(update(Conversation).values(last_customer_message_at=utcnow() - timedelta(hours=24, seconds=5)))
        db.session.commit()
    with pytest.raises(sending.SendRefused, match="within 24 hours"):
        reply(app)
    assert outgoing(app) == []


def test_an_account_that_must_reconnect_cannot_queue_replies(app, connected, alice):
    with app.app_context():
        db.session.execute(update(Account).values(status="reconnect_needed"))
        db.session.commit()
    with pytest.raises(sending.SendRefused, match="reconnects"):
        reply(app)


@pytest.mark.parametrize("code, subcode, error_code, reason", [
    (10, 2534022, "window", "within 24 hours"),
    (551, None, "unavailable_user", "isn't available on Instagram"),
    (200, None, "permission", "may not send this message"),
    (100, None, "invalid", "rejected the message"),
])
def test_final_errors_fail_the_message_with_a_human_reason(app, alice, run_jobs, sim, code, subcode, error_code,
                                                           reason):
    sim.fail_next("send", code, subcode)
    message_id = reply(app)
    run_jobs()
    failed = row(app, message_id)
    assert failed.status == "failed" and failed.error_code == error_code
    assert reason in failed.error_message
    assert alice.received_texts == []
    assert len(sim.calls_to("send")) == 1  # final: never tried again
    assert failed_jobs(app) == []


def test_a_dead_token_fails_the_message_and_flags_the_account(app, connected, alice, run_jobs, sim):
    connected.ig.revoke_token()
    message_id = reply(app)
    run_jobs()
    failed = row(app, message_id)
    assert failed.status == "failed" and failed.error_code == "token" and "reconnect" in failed.error_message
    with app.app_context():
        account = db.session.get(Account, connected.account.id)
        assert account.status == "reconnect_needed"
    assert alice.received_texts == []


@pytest.mark.parametrize("code, subcode", [(4, None), (2, None)])
def test_throttling_and_outages_retry_then_send(app, alice, run_jobs, sim, code, subcode):
    sim.fail_next("send", code, subcode)
    message_id = reply(app)
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, in M and L."]
    assert row(app, message_id).status == "sent"
    assert len(sim.calls_to("send")) == 2


def test_a_send_that_keeps_failing_gives_up_with_a_reason(app, alice, run_jobs, sim):
    sim.fail_next("send", 2, None, times=5)
    message_id = reply(app)
    run_jobs()
    failed = row(app, message_id)
    assert failed.status == "failed" and "after several tries" in failed.error_message
    assert len(sim.calls_to("send")) == 2  # one retry allowed by SEND_RETRY_INTERVALS = [0]


def test_an_ambiguous_failure_is_never_resent_and_the_echo_confirms_it(app, alice, run_jobs, sim):
    sim.faults.send_ambiguous = 1
    message_id = reply(app)
    run_jobs()
    sim.settle()
    assert alice.received_texts == ["Yes, in M and L."]  # once
    assert len(sim.calls_to("send")) == 1
    sent = row(app, message_id)
    assert sent.status == "sent" and sent.mid == alice.received[0].mid  # the echo claimed it
    assert len(outgoing(app)) == 1


def test_an_ambiguous_failure_without_an_echo_waits_then_fails(app, connected, alice, run_jobs, sim):
    sim.faults.send_ambiguous = 1
    connected.ig.unsubscribe()  # the echo never comes
    message_id = reply(app)
    run_jobs()
    waiting = row(app, message_id)
    assert waiting.status == "pending" and waiting.error_code == "ambiguous"
    assert sending.status_label(waiting) == "Waiting for Instagram"
    with app.app_context():
        assert sending.expire_unconfirmed(message_id) is False  # not yet
        assert sending.sweep_unconfirmed(older_than=0) == 1
    failed = row(app, message_id)
    assert failed.status == "failed" and "never confirmed" in failed.error_message
    run_jobs()
    assert len(sim.calls_to("send")) == 1


def test_retry_sends_a_failed_message_again(app, connected, alice, run_jobs, sim):
    sim.fail_next("send", 551)
    message_id = reply(app)
    run_jobs()
    assert row(app, message_id).status == "failed"
    with app.app_context():
        again = sending.retry_send(connected.account.id, message_id)
        assert again.status == "pending" and again.error_message is None
        # A second click while it waits changes nothing.
        assert sending.retry_send(connected.account.id, message_id).status == "pending"
    run_jobs()
    sim.settle()
    assert row(app, message_id).status == "sent"
    assert alice.received_texts == ["Yes, in M and L."]
    assert len(outgoing(app)) == 1


def test_retry_refuses_sent_messages_and_other_accounts(app, connected, alice, run_jobs, sim, factory):
    message_id = reply(app)
    run_jobs()
    other = factory.account()
    with app.app_context():
        with pytest.raises(sending.SendRefused, match="Only a message that failed"):
            sending.retry_send(connected.account.id, message_id)
        with pytest.raises(sending.NotFound):
            sending.retry_send(other.id, message_id)


def test_a_send_job_finding_its_message_claimed_does_not_send(app, connected, alice, run_jobs, sim):
    """The echo of an identical message typed in the app claimed our pending row first."""
    message_id = reply(app)
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(mid="m-claimed", status="sent"))
        db.session.commit()
        assert sending.send_message(message_id) == "already-sent"
    assert sim.calls_to("send") == []


def test_a_send_job_that_died_mid_call_is_never_resent(app, alice, run_jobs, sim):
    """The worker was killed while the Send API call was in flight: the row stays 'sending'."""
    message_id = reply(app)
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(error_code="sending",
                                                                                   send_attempts=1))
        db.session.commit()
    run_jobs()  # the job runs again: it must not send blindly
    assert sim.calls_to("send") == []
    waiting = row(app, message_id)
    assert waiting.status == "pending" and sending.status_label(waiting) == "Waiting for Instagram"


def test_the_periodic_recovery_fails_sends_that_never_got_an_echo(app, alice, run_jobs, sim):
    message_id = reply(app)
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == message_id).values(
            error_code="sending", send_attempts=1, updated_at=utcnow() - timedelta(minutes=11)))
        db.session.commit()
        from inbox import jobs

        jobs.recover_deliveries()  # the worker runs it every few minutes
    failed = row(app, message_id)
    assert failed.status == "failed" and "never confirmed" in failed.error_message
    run_jobs()  # the send job still queued finds it failed
    assert sim.calls_to("send") == []
