"""Applying comment changes: one row per comment id through redeliveries, our own comments,
edits, deletions, hiding, mentions, the live events, and accounts kept apart."""

from __future__ import annotations

import json

from sqlalchemy import select

from inbox.extensions import db, get_redis
from inbox.live.publish import channel
from inbox.models import Comment, Post
from inbox.services import comments as comment_service
from tests.support.live import drain
from tests.support.stored import count, last_results
from tests.support.webhooks import (
    ACCOUNT, CUSTOMER, MEDIA, SECOND_ACCOUNT, T0, changes, comment, envelope, message, post,
)


def stored(app, **where) -> list[Comment]:
    with app.app_context():
        query = select(Comment).order_by(Comment.id)
        for key, value in where.items():
            query = query.where(getattr(Comment, key) == value)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def actions(app) -> list[str]:
    return [r["action"] for r in last_results(app)]


def test_a_comment_is_stored_once_with_its_post_and_a_redelivery_is_a_duplicate(client, app, account):
    payload = changes(comment("1791", "How much? 😍"), comment("1792", "@anna.b same", parent="1791",
                                                                customer="9100000000000002", username="ben"))
    assert post(client, payload).status_code == 200
    assert actions(app) == ["created", "created"]
    first, reply = stored(app)
    assert (first.comment_id, first.text, first.author_igsid, first.author_username) == (
        "1791", "How much? 😍", CUSTOMER, "anna.b")
    assert (first.meta_timestamp, first.is_own, first.is_read, first.field) == (T0, False, False, "comments")
    assert reply.parent_comment_id == "1791" and reply.post_id == first.post_id
    with app.app_context():
        assert db.session.get(Post, first.post_id).media_id == MEDIA

    post(client, payload)
    assert actions(app) == ["duplicate", "duplicate"]
    assert count(app, Comment) == 2


def test_edits_keep_the_earlier_text_and_an_old_version_redelivered_changes_nothing(client, app, account):
    post(client, changes(comment("1791", "price?")))
    post(client, changes(comment("1791", "price in EUR?", verb="edited")))
    post(client, changes(comment("1791", "price?")))  # Meta retries the first delivery late
    (row,) = stored(app)
    assert (row.text, row.previous_texts, row.edit_count) == ("price in EUR?", ["price?"], 1)
    assert actions(app) == ["duplicate"]


def test_deletions_mark_the_row_and_one_that_comes_first_leaves_a_tombstone(client, app, account):
    post(client, changes(comment("1791", "spam")))
    post(client, changes(comment("1791", None, verb="remove")))
    assert actions(app) == ["deleted"]
    post(client, changes(comment("1792", None, verb="remove")))
    assert actions(app) == ["deleted"]
    post(client, changes(comment("1792", "late add of a deleted comment")))
    assert actions(app) == ["duplicate"]
    assert [(r.comment_id, r.deleted) for r in stored(app)] == [("1791", True), ("1792", True)]


def test_hide_and_unhide_from_changes(client, app, account):
    post(client, changes(comment("1791", "rude")))
    post(client, changes(comment("1791", None, verb="hide")))
    assert stored(app)[0].hidden is True
    post(client, changes(comment("1791", None, verb="unhide")))
    assert stored(app)[0].hidden is False
    post(client, changes(comment("1799", None, verb="hide")))
    assert actions(app) == ["ignored"]


def test_our_own_comments_are_recognised_and_our_pending_reply_is_claimed_not_doubled(client, app, account):
    post(client, changes(comment("1791", "price?")))
    post(client, changes(comment("1793", "Thanks for asking!", own=True, parent="1791")))
    own = stored(app, comment_id="1793")[0]
    assert own.is_own and own.sender_kind == "instagram_app" and own.author_igsid == ACCOUNT and own.is_read
    assert last_results(app)[0]["direction"] == "out"

    first = stored(app, comment_id="1791")[0]
    with app.app_context():
        pending = comment_service.reply_publicly(account.id, first.id, None, "Sent you a DM 💌")
        pending_id = pending.id
    # The reply's webhook arrives before the Comments API answers: it claims our row.
    post(client, changes(comment("1794", "Sent you a DM 💌", customer=ACCOUNT, username="shop", parent="1791")))
    assert actions(app) == ["claimed"]
    claimed = stored(app, id=pending_id)[0]
    assert (claimed.comment_id, claimed.status, claimed.is_own) == ("1794", "sent", True)
    assert count(app, Comment) == 3


def test_mentions_and_live_comments(client, app, account):
    post(client, changes({"field": "mentions", "value": {"media_id": "18000000000000009", "comment_id": "1795"}},
                         {"field": "mentions", "value": {"media_id": "18000000000000009"}},
                         comment("1796", "🔥🔥", field="live_comments")))
    assert actions(app) == ["created", "ignored", "created"]
    mention, live = stored(app)
    assert (mention.field, mention.text, mention.comment_id) == ("mentions", None, "1795")
    assert live.field == "live_comments"
    assert "caption" in last_results(app)[1]["reason"]


def test_one_delivery_mixes_messages_and_comments_and_both_apply(client, app, account):
    payload = {"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": T0, "messaging": [message("m-1", "hi")]},
        {"id": ACCOUNT, "time": T0 // 1000, "changes": [comment("1791", "price?")]},
    ]}
    post(client, payload)
    assert actions(app) == ["created", "created"]
    assert count(app, Comment) == 1


def test_comments_land_in_their_own_account_only(client, app, account, second_account):
    post(client, changes(comment("1791", "for the first shop")))
    post(client, changes(comment("1791", "same id, other shop"), account=SECOND_ACCOUNT))
    post(client, changes(comment("1792", "nobody's"), account="17841499999999999"))
    rows = stored(app)
    assert [(r.account_id, r.text) for r in rows] == [(account.id, "for the first shop"),
                                                      (second_account.id, "same id, other shop")]
    assert actions(app) == ["ignored"]
    with app.app_context():
        assert comment_service.post_summaries(account.id)[0].comments == 1
        assert [c.text for c, _, _ in comment_service.list_comments(second_account.id)] == ["same id, other shop"]


def test_live_events_after_the_commit(client, app, account):
    with app.app_context():
        pubsub = get_redis().pubsub()
        pubsub.subscribe(channel(account.id))
    post(client, changes(comment("1791", "price?")))
    post(client, changes(comment("1791", "price??", verb="edited")))
    events = [e for e in drain(pubsub) if e["type"].startswith("comment.")]
    (row,) = stored(app)
    assert events == [{"type": "comment.created", "account_id": account.id, "comment_id": row.id,
                       "post_id": row.post_id},
                      {"type": "comment.updated", "account_id": account.id, "comment_id": row.id,
                       "post_id": row.post_id}]
    json.dumps(events)
