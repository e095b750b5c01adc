"""The Comments API and private replies against the simulator: Meta's refusals, classified as for sends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account, Comment, Message
from inbox.services import comments, ratelimit
from inbox.services.sending import RetryLater, send_message


@pytest.fixture
def asked(sim_webhooks, connected, app):
    """A customer's comment on the shop's post, stored by its webhook: (sim comment id, row id)."""
    shop = connected.ig
    media = shop.add_post("Red dress")
    sent = shop.add_customer("anna.b").comments_on(media, "price?")
    sim_webhooks.settle()
    with app.app_context():
        return sent.mid, db.session.scalar(select(Comment.id).where(Comment.comment_id == sent.mid))


def _queue_private(app, account_id, row_id, token="t") -> int:
    with app.app_context():
        return comments.reply_privately(account_id, row_id, None, "Hi!", token).id


def _message(app, message_id) -> Message:
    with app.app_context():
        row = db.session.get(Message, message_id)
        db.session.expunge(row)
        return row


def test_a_private_reply_past_seven_days_fails_with_a_reason(sim_webhooks, connected, app, asked):
    _, row_id = asked
    message_id = _queue_private(app, connected.account.id, row_id)
    sim_webhooks.advance(days=8)  # Instagram's clock moved on before the job ran
    with app.app_context():
        assert send_message(message_id) == "failed"
    failed = _message(app, message_id)
    assert failed.status == "failed" and "within 7 days of the comment" in failed.error_message


def test_instagram_refusing_a_second_private_reply_is_final(sim_webhooks, connected, app, asked):
    sim_id, row_id = asked
    sim_webhooks.world.comments[sim_id].private_reply_mid = "sent-from-another-tool"
    message_id = _queue_private(app, connected.account.id, row_id)
    with app.app_context():
        assert send_message(message_id) == "failed"
    assert "refused a private reply to this comment" in _message(app, message_id).error_message


def test_throttling_leaves_the_action_owed_and_a_missing_comment_says_so(sim_webhooks, connected, app, asked):
    sim_id, row_id = asked
    with app.app_context():
        comments.set_hidden(connected.account.id, row_id, True)
    sim_webhooks.fail_next("comment_hide", 4)
    with app.app_context(), pytest.raises(RetryLater):
        comments.run_comment_action(row_id)
    with app.app_context():
        assert db.session.get(Comment, row_id).action == "hide"  # still owed; RQ runs it again

    sim_webhooks.world.comments[sim_id].deleted = True  # deleted on Instagram meanwhile
    with app.app_context():
        assert comments.run_comment_action(row_id) == "failed"
        row = db.session.get(Comment, row_id)
        assert row.action is None and "no longer has this comment" in row.action_error
        # Deleting a comment Instagram no longer has is done, not an error.
        comments.delete_comment(connected.account.id, row_id)
        assert comments.run_comment_action(row_id) == "delete"
        assert db.session.get(Comment, row_id).deleted


def test_a_dead_token_fails_the_public_reply_and_asks_for_a_reconnect(sim_webhooks, connected, app, asked):
    _, row_id = asked
    with app.app_context():
        reply_id = comments.reply_publicly(connected.account.id, row_id, None, "DM sent").id
    connected.ig.revoke_token()
    with app.app_context():
        assert comments.send_public_reply(reply_id) == "failed"
        reply = db.session.get(Comment, reply_id)
        assert reply.status == "failed" and "reconnect" in reply.action_error
        assert db.session.get(Account, connected.account.id).status == "reconnect_needed"


def test_an_hourly_budget_is_refused_not_waited_for_when_the_slot_is_far(app):
    with app.app_context():
        assert ratelimit.acquire("private_reply", "acct", 1 / 3600, burst=1, max_wait=5) == 0
        with pytest.raises(ratelimit.BudgetSpent) as spent:
            ratelimit.acquire("private_reply", "acct", 1 / 3600, burst=1, max_wait=5)
        assert 3500 < spent.value.retry_after <= 3600
