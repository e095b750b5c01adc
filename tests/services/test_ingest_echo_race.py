"""The echo race: our sends and their echoes, in every order, end as exactly one row per real message.

The send job writes a pending outgoing row, calls the Send API, then
calls echoes.reconcile_sent(message_id, mid). Meta's echo of the same send may arrive
before or after that, once or twice; the owner may type the same text in the app.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation, Message, Reaction
from inbox.services.ingest import echoes
from inbox.services.deliveries import receive_delivery
from tests.support.factory import Factory
from tests.support.webhooks import T0, encode, envelope, message, reaction, seen


@pytest.fixture
def conversation(app, account):
    """A customer has written; returns the conversation id."""
    with app.app_context():
        receive_delivery(encode(envelope(message("m-customer", "Do you have it in M?", ts=T0))))
        return db.session.scalar(select(Conversation.id))


def pending(app, conversation_id: int, text: str | None = "Yes, in M and L.") -> int:
    """What the composer writes before the send job runs: an outgoing row without a mid.

    Its time is before Meta's time for it (the echo's, T0 + 1000), so the thread and the list
    row can only show it at Meta's time if reconciling moves it there.
    """
    return Factory(app).message(conversation_id, text, out=True, status="pending", ts=T0 + 500,
                                client_token=uuid.uuid4().hex).id


def echo(app, mid: str, text: str | None = "Yes, in M and L.", ts: int = T0 + 1000, **fields):
    with app.app_context():
        result = receive_delivery(encode(envelope(message(mid, text, echo=True, ts=ts, **fields))))
        return result.outcomes[0].action


def returned(app, message_id: int, mid: str):
    with app.app_context():
        echoes.reconcile_sent(message_id, mid)


def outgoing(app) -> list[tuple]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            select(Message.id, Message.mid, Message.sender_kind, Message.status, Message.text)
            .where(Message.direction == "out").order_by(Message.id))]


def test_send_returns_then_the_echo_confirms_it(app, conversation):
    ours = pending(app, conversation)
    returned(app, ours, "m-a")
    assert echo(app, "m-a") == "confirmed"
    assert echo(app, "m-a") == "confirmed"  # a retried echo
    assert outgoing(app) == [(ours, "m-a", "staff", "sent", "Yes, in M and L.")]
    with app.app_context():
        assert db.session.get(Message, ours).meta_timestamp == T0 + 1000  # Meta's time orders the thread


def test_echo_before_the_send_returns_claims_the_pending_row(app, conversation):
    ours = pending(app, conversation)
    assert echo(app, "m-a") == "claimed"
    assert outgoing(app) == [(ours, "m-a", "staff", "sent", "Yes, in M and L.")]
    returned(app, ours, "m-a")
    assert outgoing(app) == [(ours, "m-a", "staff", "sent", "Yes, in M and L.")]


def test_echo_twice_before_and_after_the_send_returns(app, conversation):
    ours = pending(app, conversation)
    assert echo(app, "m-a") == "claimed"
    assert echo(app, "m-a") == "confirmed"
    returned(app, ours, "m-a")
    assert echo(app, "m-a") == "confirmed"
    assert outgoing(app) == [(ours, "m-a", "staff", "sent", "Yes, in M and L.")]


def test_an_echo_whose_content_differs_is_merged_into_ours_when_the_send_returns(app, conversation):
    ours = pending(app, conversation, "See https://shop.example/rd-1")
    # Meta's copy differs (here: it arrives with a link preview and no text), so it cannot be claimed.
    assert echo(app, "m-a", None, attachments=[{"type": "fallback", "payload": {"url": "https://shop.example/rd-1"}}]) == "created"
    with app.app_context():
        receive_delivery(encode(envelope(reaction("m-a", ts=T0 + 2000))))
        receive_delivery(encode(envelope(seen("m-a", ts=T0 + 3000))))
    assert [r[2] for r in outgoing(app)] == ["staff", "instagram_app"]
    returned(app, ours, "m-a")
    assert outgoing(app) == [(ours, "m-a", "staff", "seen", "See https://shop.example/rd-1")]
    with app.app_context():
        row = db.session.get(Message, ours)
        assert [r.reaction for r in row.reactions] == ["love"]  # what happened to the echo's row is kept
        assert [a.type for a in row.attachments] == ["fallback"]
        assert db.session.scalar(select(Conversation.last_message_sender_kind)) == "staff"


def test_the_same_text_sent_twice_from_the_app_is_two_messages(app, conversation):
    assert echo(app, "m-app-1", "ok") == "created"
    assert echo(app, "m-app-2", "ok") == "created"
    assert [(r[1], r[2]) for r in outgoing(app)] == [("m-app-1", "instagram_app"), ("m-app-2", "instagram_app")]


def test_an_echo_claims_only_a_recent_pending_send_of_the_same_conversation(app, conversation, factory):
    ours = pending(app, conversation, "ok")
    with app.app_context():
        row = db.session.get(Message, ours)
        row.created_at = row.created_at.replace(year=2000)
        db.session.commit()
    assert echo(app, "m-app", "ok") == "created"  # too old to be this echo's send
    other = envelope(message("m-x", "ok", customer="9100000000000077", echo=True))
    with app.app_context():
        assert receive_delivery(encode(other)).outcomes[0].action == "created"
    assert sorted(r[1] or "" for r in outgoing(app)) == ["", "m-app", "m-x"]


OPS_TWO_PENDING = ["echo a", "echo b", "send 1 returns a", "send 2 returns b"]


@pytest.mark.parametrize("order", list(itertools.permutations(OPS_TWO_PENDING)), ids=" → ".join)
def test_two_pending_identical_texts_and_two_echoes_in_every_order(app, conversation, order):
    first, second = pending(app, conversation, "ok"), pending(app, conversation, "ok")
    for op in order:
        if op.startswith("echo"):
            echo(app, "m-" + op[-1], "ok", ts=T0 + (10 if op.endswith("a") else 20))
        else:
            returned(app, first if " 1 " in op else second, "m-" + op[-1])
    assert outgoing(app) == [(first, "m-a", "staff", "sent", "ok"), (second, "m-b", "staff", "sent", "ok")]


OPS_OWNER_TOO = ["echo of our send", "echo of the owner's text", "send returns"]


@pytest.mark.parametrize("order", list(itertools.permutations(OPS_OWNER_TOO)), ids=" → ".join)
def test_our_send_and_the_owner_typing_the_same_text_in_the_app_in_every_order(app, conversation, order):
    ours = pending(app, conversation, "ok")
    for op in order:
        if op == "echo of our send":
            echo(app, "m-ours", "ok", ts=T0 + 10)
        elif op == "echo of the owner's text":
            echo(app, "m-owner", "ok", ts=T0 + 20)
        else:
            returned(app, ours, "m-ours")
    rows = outgoing(app)
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("m-ours", "staff", "sent"), ("m-owner", "instagram_app", "sent")]
    assert [r[0] for r in rows if r[1] == "m-ours"] == [ours]
    with app.app_context():
        owner = db.session.scalar(select(Message).where(Message.mid == "m-owner"))
        assert owner.meta_timestamp == T0 + 20  # each mid keeps Meta's time for it


def test_reconcile_of_a_vanished_message_does_nothing(app, conversation):
    with app.app_context():
        assert echoes.reconcile_sent(999999, "m-a") is None


def test_the_send_returning_after_the_echo_row_was_reacted_to_keeps_one_reaction_per_person(app, conversation):
    ours = pending(app, conversation, "ok")
    assert echo(app, "m-a", "OK") == "created"  # different case: not claimable
    with app.app_context():
        receive_delivery(encode(envelope(reaction("m-a", ts=T0 + 2000))))
    returned(app, ours, "m-a")
    with app.app_context():
        assert db.session.scalars(select(Reaction.message_id)).all() == [ours]
