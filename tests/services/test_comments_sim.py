"""Comments end to end with the Meta simulator over real HTTP: ingestion, public actions, private replies."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import AssignmentEvent, Comment, Conversation, Message
from inbox.services import comments
from inbox.services.products import panel
from tests.support.stored import deliveries


def rows(app, **where) -> list[Comment]:
    with app.app_context():
        query = select(Comment).order_by(Comment.id)
        for key, value in where.items():
            query = query.where(getattr(Comment, key) == value)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def by_ig(app, comment_id: str) -> Comment:
    (row,) = rows(app, comment_id=comment_id)
    return row


def test_comments_replies_edits_and_deletions_land_once(sim_webhooks, connected, app):
    shop = connected.ig
    post = shop.add_post("Red linen dress RD-1")
    anna, ben = shop.add_customer("anna.b"), shop.add_customer("ben")
    first = anna.comments_on(post, "price? 😍")
    reply = ben.comments_on(post, "@anna.b me too", reply_to=first.mid)
    anna.edits_comment(first.mid, "price in EUR? 😍")
    gone = ben.comments_on(post, "spam spam")
    ben.deletes_comment(gone.mid)
    owner = shop.comments_on(post, "DM us!", reply_to=first.mid)
    sim_webhooks.settle()
    assert all(d.status == "processed" for d in deliveries(app))
    first_row = by_ig(app, first.mid)
    assert (first_row.text, first_row.previous_texts, first_row.author_username) == (
        "price in EUR? 😍", ["price? 😍"], "anna.b")
    assert (first_row.media_id, first_row.parent_comment_id, first_row.is_own) == (post.id, None, False)
    assert by_ig(app, reply.mid).parent_comment_id == first.mid
    assert by_ig(app, gone.mid).deleted is True
    own = by_ig(app, owner.mid)
    assert own.is_own and own.sender_kind == "instagram_app" and own.parent_comment_id == first.mid
    assert len(rows(app)) == 4  # one row per comment id

    # Meta delivers again: nothing changes.
    for delivery in sim_webhooks.deliveries:
        sim_webhooks.webhooks._attempt(delivery, duplicates=False)
    assert len(rows(app)) == 4 and by_ig(app, first.mid).edit_count == 1


def test_public_reply_hide_and_delete_go_through_the_comments_api(sim_webhooks, connected, app, run_jobs):
    shop = connected.ig
    post = shop.add_post("Canvas tote")
    anna = shop.add_customer("anna.b")
    asked = anna.comments_on(post, "link pls")
    sim_webhooks.settle()
    row = by_ig(app, asked.mid)
    with app.app_context():
        mine = comments.reply_publicly(connected.account.id, row.id, None, "Sent you a DM!")
        mine_id = mine.id
        comments.set_hidden(connected.account.id, row.id, True)
    run_jobs()
    sim_webhooks.settle()
    run_jobs()
    reply = rows(app, id=mine_id)[0]
    assert reply.status == "sent" and reply.comment_id and reply.is_own
    assert len(rows(app, is_own=True)) == 1  # the reply's webhook found our row
    sim_comment = sim_webhooks.world.comments[asked.mid]
    assert sim_comment.hidden and by_ig(app, asked.mid).hidden
    assert sim_webhooks.world.comments[reply.comment_id].parent_id == asked.mid

    with app.app_context():
        comments.delete_comment(connected.account.id, row.id)
    run_jobs()
    assert sim_webhooks.world.comments[asked.mid].deleted and by_ig(app, asked.mid).deleted


def test_a_private_reply_opens_the_conversation_once_and_carries_the_post_product(
        sim_webhooks, connected, app, run_jobs, factory):
    shop = connected.ig
    post = shop.add_post("Our red linen dress")
    product = factory.product(connected.account, "Red Dress", "RD-1")
    factory.link(factory.post(connected.account, post.id, caption="Our red linen dress", is_own=True), product)
    anna = shop.add_customer("anna.b")  # never wrote a DM: no profile can be read
    asked = anna.comments_on(post, "price?")
    sim_webhooks.settle()
    row = by_ig(app, asked.mid)
    with app.app_context():
        message = comments.reply_privately(connected.account.id, row.id, None, "Hi! It is 89 EUR.", "tok-1")
        again = comments.reply_privately(connected.account.id, row.id, None, "Hi! It is 89 EUR.", "tok-1")
        assert again.id == message.id  # a double submit is one reply
        with pytest.raises(comments.CommentRefused, match="one private reply"):
            comments.reply_privately(connected.account.id, row.id, None, "again", "tok-2")
    run_jobs()
    sim_webhooks.settle()
    run_jobs()
    assert [r.text for r in anna.received] == ["Hi! It is 89 EUR."]
    assert anna.received[0].comment_id == asked.mid
    with app.app_context():
        sent = db.session.get(Message, message.id)
        assert sent.status == "sent" and sent.mid and sent.comment_id == row.id
        conversation = db.session.get(Conversation, sent.conversation_id)
        assert conversation.customer_igsid == anna.igsid
        assert conversation.product_id == product.id and conversation.assignment_source == "comment"
        reason = db.session.scalars(select(AssignmentEvent.reason)
                                    .where(AssignmentEvent.conversation_id == conversation.id)).one()
        assert "@anna.b commented on post “Our red linen dress” (Red Dress)" in reason
        assert any("commented on post" in line for line in panel.explain(conversation))
        assert db.session.scalar(select(Message.id).where(Message.conversation_id == conversation.id,
                                                          Message.id != message.id)) is None  # the echo was ours
