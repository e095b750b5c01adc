"""Applying deliveries: every shape, idempotent, out of order, and what the conversation shows."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from inbox.extensions import db, get_redis
from inbox.live.publish import channel
from tests.support.stored import conversations, deliveries, last_results, messages, snapshot
from tests.support.live import drain
from tests.support.refusals import refusing
from tests.support.webhooks import (
    ACCOUNT, CUSTOMER, T0, edit, envelope, fixture, fixture_names, message, post, reaction, seen,
    unsend,
)

M = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTc2MzA3NjMyMjgzMDk2M"

# fixture -> (fixtures applied before it, the actions it gives)
EXPECTED = {
    "text": ([], ["created"]),
    "image": ([], ["created"]),
    "video": ([], ["created"]),
    "audio": ([], ["created"]),
    "file": ([], ["created"]),
    "share": ([], ["created"]),
    "ig_post_id": ([], ["created"]),
    "ig_post_media_id": ([], ["created"]),
    "ig_reel": ([], ["created"]),
    "reel": ([], ["created"]),
    "story_mention": ([], ["created"]),
    "ig_story": ([], ["created"]),
    "ephemeral": ([], ["created"]),
    "fallback": ([], ["created"]),
    "template_product": ([], ["created"]),
    "sticker": ([], ["created"]),
    "unknown_attachment": ([], ["created"]),
    "attachments_as_object": ([], ["created"]),
    "text_and_attachments": ([], ["created"]),
    "unsupported": ([], ["created"]),
    "reply_to_message": (["text"], ["created"]),
    "reply_to_story": ([], ["created"]),
    "quick_reply": ([], ["created"]),
    "ad_referral": ([], ["created"]),
    "product_referral": ([], ["created"]),
    "echo_text": ([], ["created"]),
    "echo_image": ([], ["created"]),
    "deleted": (["text"], ["deleted"]),
    "deleted_echo": (["echo_text"], ["deleted"]),
    "reaction_react": (["echo_text"], ["updated"]),
    "reaction_unreact": (["echo_text", "reaction_react"], ["updated"]),
    "seen_mid": (["echo_text"], ["updated"]),
    "seen_watermark": (["echo_text"], ["updated"]),
    "read_no_sender": (["echo_text"], ["updated"]),
    "edit": (["text"], ["updated"]),
    "edit_no_sender": (["text", "edit"], ["updated"]),
    "edit_num_edit_zero": ([], ["created"]),
    "postback": ([], ["created"]),
    "messaging_referral": (["text"], ["updated"]),
    "standby": ([], ["ignored"]),
    "changes_comment": ([], ["created"]),
    "handover": ([], ["ignored"]),
    "multi_entry_batch": ([], ["created", "created", "created"]),
    "numeric_ids_seconds": ([], ["created"]),
    "iso_timestamp": ([], ["created"]),
    "self_message": ([], ["ignored"]),
    "unknown_account": ([], ["ignored"]),
    "other_object": ([], ["ignored"]),
}


def deliver(client, payload):
    response = post(client, payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def actions(app) -> list[str]:
    return [r["action"] for r in last_results(app)]


def test_every_fixture_has_an_expectation():
    assert sorted(EXPECTED) == fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shape_applies_and_a_second_delivery_changes_nothing(app, client, account, second_account, name):
    before, expected = EXPECTED[name]
    for prerequisite in before:
        deliver(client, fixture(prerequisite))
    deliver(client, fixture(name))
    assert actions(app) == expected, last_results(app)
    assert not any(r.get("error") for r in last_results(app))

    state = snapshot(app)
    deliver(client, fixture(name))  # Meta retries: at least once means sometimes twice
    again = actions(app)
    assert all(a in ("duplicate", "confirmed", "ignored") for a in again), last_results(app)
    assert snapshot(app) == state


def test_a_customer_text_opens_a_conversation(app, client, account):
    deliver(client, fixture("text"))
    [conversation] = conversations(app)
    assert (conversation.account_id, conversation.customer_igsid) == (account.id, CUSTOMER)
    assert conversation.last_message_preview == "Hi! Is the red dress still available?"
    assert conversation.last_message_direction == "in" and conversation.last_message_sender_kind == "customer"
    assert conversation.unread_count == 1 and conversation.status == "open"
    assert int(conversation.last_message_at.timestamp() * 1000) == T0
    assert conversation.last_customer_message_at == conversation.last_message_at
    [msg] = messages(app)
    assert (msg.direction, msg.sender_kind, msg.sender_igsid, msg.meta_timestamp) == ("in", "customer", CUSTOMER, T0)
    assert msg.mid == M + "text" and msg.status is None


@pytest.mark.parametrize("name, kind, media_id, title, preview", [
    ("image", "image", None, None, "Photo"),
    ("ig_post_id", "ig_post", "18000000000000001", "New in: the red linen dress RD-1 #summer", "Shared a post"),
    ("ig_post_media_id", "ig_post", "18000000000000002", "Woven bag, back in stock", "Shared a post"),
    ("ig_reel", "ig_reel", "18000000000000003", "How we dye the linen", "Shared a reel"),
    ("reel", "reel", "18000000000000004", "Behind the scenes", "Shared a reel"),
    ("ig_story", "ig_story", "18000000000000005", None, "Shared a story"),
    ("story_mention", "story_mention", None, None, "Mentioned you in their story"),
    ("ephemeral", "ephemeral", None, None, "Sent a disappearing photo"),
    ("template_product", "template", None, "Red linen dress", "Shared a product"),
    ("unknown_attachment", "unknown", None, None, "Attachment"),
])
def test_attachments_are_stored_with_type_payload_url_media_id_and_caption(app, client, account, name, kind, media_id,
                                                                            title, preview):
    deliver(client, fixture(name))
    [msg] = messages(app)
    [attachment] = msg.attachments
    raw = json.loads(fixture(name))["entry"][0]["messaging"][0]["message"]["attachments"]
    assert attachment.raw == (raw[0] if isinstance(raw, list) else raw)
    assert (attachment.type, attachment.media_id, attachment.title) == (kind, media_id, title)
    assert attachment.account_id == account.id and attachment.position == 0
    if kind == "ephemeral":
        assert attachment.source_url is None
    else:
        assert attachment.source_url.startswith("https://")
    assert conversations(app)[0].last_message_preview == preview


def test_text_with_several_attachments_keeps_their_order(app, client, account):
    deliver(client, fixture("text_and_attachments"))
    [msg] = messages(app)
    assert msg.text == "these two please"
    assert [(a.position, a.source_url[-3:]) for a in msg.attachments] == [(0, "p=1"), (1, "p=2")]


def test_replies_quick_replies_postbacks_and_unsupported_messages(app, client, account):
    for name in ("text", "reply_to_message", "reply_to_story", "quick_reply", "postback", "unsupported"):
        deliver(client, fixture(name))
    by_mid = {m.mid: m for m in messages(app)}
    assert by_mid[M + "replymsg"].reply_to_mid == M + "text"
    story = by_mid[M + "replystory"]
    assert (story.reply_to_story_id, story.reply_to_story_url) == (
        "18000000000000006", "https://scontent.cdninstagram.com/v/t51/story2.jpg")
    assert by_mid[M + "quickreply"].quick_reply_payload == "SIZE_M"
    postback = by_mid[M + "postback"]
    assert (postback.text, postback.postback_payload, postback.direction) == ("Track my order", "TRACK_ORDER", "in")
    assert by_mid[M + "unsupported"].is_unsupported


def test_an_ad_referral_is_kept_on_the_message_and_the_conversation(app, client, account):
    deliver(client, fixture("ad_referral"))
    [msg] = messages(app)
    sent = json.loads(fixture("ad_referral"))["entry"][0]["messaging"][0]["message"]["referral"]
    assert msg.referral == sent
    [conversation] = conversations(app)
    assert (conversation.last_ad_id, conversation.last_ad_title) == ("23850000000000001", "Spring sale: linen dresses")
    # A later ig.me/ad referral into the same conversation updates it.
    deliver(client, fixture("messaging_referral"))
    [conversation] = conversations(app)
    assert (conversation.last_ad_id, conversation.last_ad_title) == ("23850000000000002", "Summer collection")
    deliver(client, fixture("product_referral"))
    assert messages(app)[-1].referral == {"product": {"id": "7000000000000002"}}


def test_a_referral_without_a_conversation_is_recorded_as_ignored(app, client, account):
    deliver(client, fixture("messaging_referral"))
    assert actions(app) == ["ignored"] and "conversation we do not have" in last_results(app)[0]["reason"]
    assert conversations(app) == []


def test_an_echo_typed_in_the_instagram_app_is_an_outgoing_message(app, client, account):
    deliver(client, fixture("text"))
    deliver(client, fixture("echo_text"))
    [incoming, outgoing] = messages(app)
    assert (outgoing.direction, outgoing.sender_kind, outgoing.status) == ("out", "instagram_app", "sent")
    assert outgoing.sender_igsid == ACCOUNT and outgoing.conversation_id == incoming.conversation_id
    [conversation] = conversations(app)
    assert conversation.customer_igsid == CUSTOMER  # the recipient of an echo is the customer
    assert (conversation.last_message_direction, conversation.last_message_sender_kind) == ("out", "instagram_app")
    assert conversation.unread_count == 0  # the owner answered


def test_the_account_is_never_a_customer(app, client, account):
    deliver(client, fixture("self_message"))
    # An echo whose recipient is the account itself, and a message "from" the account without is_echo.
    deliver(client, envelope(message("m-self-2", "hi", customer=ACCOUNT, echo=True)))
    deliver(client, envelope({"sender": {"id": ACCOUNT}, "recipient": {"id": CUSTOMER}, "timestamp": T0,
                              "message": {"mid": "m-no-flag", "text": "typed in the app"}}))
    assert all(c.customer_igsid != ACCOUNT for c in conversations(app))
    [msg] = messages(app)
    assert (msg.mid, msg.direction, msg.sender_kind) == ("m-no-flag", "out", "instagram_app")


def test_two_identical_texts_from_the_app_are_two_messages(app, client, account):
    deliver(client, envelope(message("m-app-1", "ok", echo=True, ts=T0)))
    deliver(client, envelope(message("m-app-2", "ok", echo=True, ts=T0 + 1)))
    assert [(m.mid, m.text, m.sender_kind) for m in messages(app)] == [
        ("m-app-1", "ok", "instagram_app"), ("m-app-2", "ok", "instagram_app")]


def test_unsend_leaves_a_tombstone_without_text_or_media(app, client, account):
    deliver(client, envelope(message("m-photo", "look", attachments=[{"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/x"}}])))
    deliver(client, envelope(edit("m-photo", "look at this", 1, ts=T0 + 1)))
    deliver(client, envelope(unsend("m-photo", ts=T0 + 2)))
    [msg] = messages(app)
    assert msg.is_deleted and msg.deleted_at is not None
    assert msg.text is None and msg.previous_texts is None and msg.attachments == []
    assert conversations(app)[0].last_message_preview == "Unsent a message"
    assert actions(app) == ["deleted"]


def test_an_unsend_that_overtakes_its_message_keeps_it_unsent(app, client, account):
    deliver(client, fixture("deleted"))
    deliver(client, fixture("text"))
    [msg] = messages(app)
    assert msg.is_deleted and msg.text is None
    assert actions(app) == ["duplicate"]
    assert conversations(app)[0].unread_count == 0


def test_edits_keep_the_count_and_earlier_texts(app, client, account):
    deliver(client, fixture("text"))
    deliver(client, fixture("edit"))
    deliver(client, fixture("edit_no_sender"))  # resolved through its mid
    [msg] = messages(app)
    assert msg.text == "Is the red dress available in M?" and msg.edit_count == 2
    assert msg.previous_texts == ["Hi! Is the red dress still available?", "Hi! Is the red dress still available in M?"]
    assert conversations(app)[0].last_message_preview == "Is the red dress available in M?"
    # An older edit arriving late changes nothing.
    deliver(client, fixture("edit"))
    assert actions(app) == ["duplicate"] and messages(app)[0].edit_count == 2


def test_an_edit_that_overtakes_its_message_is_stored_with_the_new_text(app, client, account):
    deliver(client, fixture("edit"))
    deliver(client, fixture("text"))
    [msg] = messages(app)
    assert msg.text == "Hi! Is the red dress still available in M?" and msg.edit_count == 1
    assert actions(app) == ["duplicate"]


def test_num_edit_zero_for_an_unknown_mid_is_a_new_message(app, client, account):
    deliver(client, fixture("edit_num_edit_zero"))
    [msg] = messages(app)
    assert (msg.text, msg.direction, msg.edit_count) == ("Hello from dev mode", "in", 0)


def test_reactions_one_per_person_replaced_and_removed(app, client, account):
    deliver(client, fixture("echo_text"))
    deliver(client, fixture("reaction_react"))
    [msg] = messages(app)
    assert [(r.reactor_igsid, r.reaction, r.emoji) for r in msg.reactions] == [(CUSTOMER, "love", "\u2764\ufe0f")]
    deliver(client, envelope(reaction(M + "echo", ts=T0 + 205000, reaction="laugh", emoji="\U0001f602")))
    assert [(r.reaction, r.emoji) for r in messages(app)[0].reactions] == [("laugh", "\U0001f602")]
    deliver(client, fixture("reaction_react"))  # older than the one we have: a late retry
    assert [r.reaction for r in messages(app)[0].reactions] == ["laugh"]
    deliver(client, fixture("reaction_unreact"))
    assert messages(app)[0].reactions == []
    deliver(client, envelope(reaction("m-unknown")))
    assert actions(app) == ["ignored"] and "unknown message" in last_results(app)[0]["reason"]


def test_seen_marks_outgoing_messages_up_to_the_seen_one(app, client, account):
    deliver(client, envelope(message("m-out-1", "one", echo=True, ts=T0 + 1)))
    deliver(client, envelope(message("m-in", "thanks", ts=T0 + 2)))
    deliver(client, envelope(message("m-out-2", "two", echo=True, ts=T0 + 3)))
    deliver(client, envelope(message("m-out-3", "three", echo=True, ts=T0 + 4)))
    deliver(client, envelope(seen("m-out-2", ts=T0 + 10)))
    status = {m.mid: m.status for m in messages(app)}
    assert status == {"m-out-1": "seen", "m-in": None, "m-out-2": "seen", "m-out-3": "sent"}
    assert all(m.seen_at for m in messages(app) if m.status == "seen")


def test_a_seen_receipt_that_overtakes_its_message_uses_its_own_time(app, client, account):
    deliver(client, envelope(message("m-out-1", "one", echo=True, ts=T0 + 1)))
    deliver(client, envelope(seen("m-not-here-yet", ts=T0 + 5)))
    deliver(client, envelope(message("m-out-2", "later", echo=True, ts=T0 + 9)))
    assert {m.mid: m.status for m in messages(app)} == {"m-out-1": "seen", "m-out-2": "sent"}


def test_the_owner_reading_in_the_app_clears_the_unread_count(app, client, account):
    deliver(client, fixture("text"))
    assert conversations(app)[0].unread_count == 1
    deliver(client, envelope({"sender": {"id": ACCOUNT}, "recipient": {"id": CUSTOMER}, "timestamp": T0 + 1,
                              "read": {"mid": M + "text"}}))
    assert conversations(app)[0].unread_count == 0


def test_out_of_order_messages_keep_the_newest_as_the_preview_and_thread_order_by_meta_time(app, client, account):
    deliver(client, envelope(message("m-2", "second", ts=T0 + 2000)))
    deliver(client, envelope(message("m-1", "first", ts=T0 + 1000)))
    [conversation] = conversations(app)
    assert conversation.last_message_preview == "second" and conversation.unread_count == 2
    assert [m.text for m in messages(app)] == ["first", "second"]


def test_a_new_customer_message_reopens_a_done_conversation(app, client, account):
    deliver(client, envelope(message("m-1", "first")))
    with app.app_context():
        db.session.execute(text("UPDATE conversations SET status = 'done', unread_count = 0"))
        db.session.commit()
    deliver(client, envelope(message("m-1", "first")))  # a retry is not a new message
    assert conversations(app)[0].status == "done"
    deliver(client, envelope(message("m-2", "one more thing", ts=T0 + 1)))
    assert conversations(app)[0].status == "open" and conversations(app)[0].unread_count == 1


def test_batches_route_each_entry_to_its_own_account(app, client, account, second_account):
    deliver(client, fixture("multi_entry_batch"))
    by_account = sorted((c.account_id, c.customer_igsid) for c in conversations(app))
    assert len(by_account) == 3 and {a for a, _ in by_account} == {account.id, second_account.id}


def test_events_for_an_unknown_account_are_ignored_not_errors(app, client, account):
    body = deliver(client, fixture("unknown_account"))
    assert body["status"] == "ignored"
    [result] = last_results(app)
    assert result["action"] == "ignored" and result["reason"] == "unknown account 17841499999999999"
    assert messages(app) == []


def test_numeric_ids_are_stored_as_strings_and_seconds_as_ms(app, client, account):
    deliver(client, fixture("numeric_ids_seconds"))
    [msg] = messages(app)
    assert msg.sender_igsid == CUSTOMER and msg.meta_timestamp == T0


def test_standby_events_are_stored_but_not_applied(app, client, account):
    deliver(client, fixture("standby"))
    assert messages(app) == [] and deliveries(app)[0].status == "ignored"
    assert "standby" in last_results(app)[0]["reason"]


def test_live_events_are_published_after_commit_and_not_for_repeats(app, client, account):
    with app.app_context():
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(account.id))
    deliver(client, fixture("text"))
    received = drain(pubsub, close=False)
    [msg] = messages(app)
    assert received == [
        {"type": "message.created", "account_id": account.id, "conversation_id": msg.conversation_id, "message_id": msg.id},
        {"type": "conversation.updated", "account_id": account.id, "conversation_id": msg.conversation_id},
    ]
    deliver(client, fixture("text"))
    assert drain(pubsub, close=False) == []
    deliver(client, fixture("edit"))
    assert [e["type"] for e in drain(pubsub)] == ["message.updated", "conversation.updated"]


# --- One event fails, the rest applies; replay ------------------------------------------

@pytest.fixture
def refuse_boom(app):
    """A real database trigger refuses messages whose text is "boom"; call the fixture to lift it."""
    with refusing(app, "boom") as lift:
        yield lift


def test_a_failing_event_rolls_back_alone_and_the_delivery_can_be_replayed(app, client, account, refuse_boom, runner):
    payload = envelope(message("m-1", "before", ts=T0), message("m-boom", "boom", customer="9100000000000099", ts=T0 + 1),
                       message("m-3", "after", ts=T0 + 2))
    assert deliver(client, payload)["status"] == "failed"  # answered 200: Meta must not retry what we keep
    [delivery] = deliveries(app)
    assert delivery.status == "failed" and "refused by the database" in delivery.error
    assert [r["action"] for r in delivery.results] == ["created", "ignored", "created"]
    assert delivery.results[1]["error"] and "refused by the database" in delivery.results[1]["error"]
    assert [m.text for m in messages(app)] == ["before", "after"]
    # The failed event left nothing behind: not even its new customer's conversation.
    assert [c.customer_igsid for c in conversations(app)] == [CUSTOMER]

    result = runner.invoke(args=["webhooks", "replay", "--failed"])
    assert result.exit_code == 1 and f"Delivery {delivery.id}: failed" in result.output

    refuse_boom()
    result = runner.invoke(args=["webhooks", "replay", "--failed"])
    assert result.exit_code == 0, result.output
    assert f"Delivery {delivery.id}: processed (1 created, 2 duplicate)" in result.output
    assert [m.text for m in messages(app)] == ["before", "boom", "after"]
    assert deliveries(app)[0].status == "processed" and deliveries(app)[0].attempts == 3

    state = snapshot(app)
    result = runner.invoke(args=["webhooks", "replay", str(delivery.id)])
    assert result.exit_code == 0 and "3 duplicate" in result.output
    assert snapshot(app) == state  # replaying an applied delivery changes nothing
    assert runner.invoke(args=["webhooks", "replay", "--failed"]).output.strip() == "Nothing to replay."


# --- Batches: plain customer messages are applied together, with the same result -------------

def _batch_story():
    """Deliveries mixing new and known customers, repeats inside and across batches, an ad, an image."""
    alice, bob, cid = CUSTOMER, "9100000000000002", "9100000000000003"
    ad = {"ad_id": "23850000000000009", "source": "ADS", "type": "OPEN_THREAD", "ads_context_data": {"ad_title": "Sale"}}
    photo = [{"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/p"}}]
    return [
        envelope(message("b-1", "hi", customer=alice, ts=T0 + 1)),
        envelope(message("b-2", "from the ad", customer=bob, ts=T0 + 2, referral=ad),
                 message("b-3", None, customer=alice, ts=T0 + 3, attachments=photo),
                 message("b-1", "hi", customer=alice, ts=T0 + 1),  # a repeat of an earlier delivery
                 message("b-4", "older, late", customer=bob, ts=T0 - 50),
                 message("b-4", "older, late", customer=bob, ts=T0 - 50),  # the same event twice in one POST
                 message("b-5", "new here", customer=cid, ts=T0 + 5)),
        envelope(message("b-6", "echo", echo=True, customer=alice, ts=T0 + 6),
                 message("b-7", "after the echo", customer=alice, ts=T0 + 7),
                 message("b-8", "and more", customer=bob, ts=T0 + 8)),
    ]


def _visible(app):
    rows = [(m.mid, m.conversation_id, m.direction, m.sender_kind, m.text, m.meta_timestamp, m.referral,
             [(a.type, a.source_url) for a in m.attachments]) for m in messages(app)]
    convs = [(c.customer_igsid, c.last_message_preview, c.last_message_direction, c.unread_count, c.status,
              c.last_message_at, c.last_customer_message_at, c.last_ad_id, c.last_ad_title) for c in conversations(app)]
    return rows, convs


@pytest.mark.parametrize("bulk", [True, False], ids=["together", "one by one"])
def test_batches_give_the_same_inbox_applied_together_or_one_by_one(app_config, account, bulk):
    from inbox import create_app

    app_config["WEBHOOK_BULK"] = bulk
    app = create_app(app_config)
    client = app.test_client()
    results = []
    for payload in _batch_story():
        deliver(client, payload)
        results.append([(r["action"], r.get("mid")) for r in last_results(app)])
    assert results == [
        [("created", "b-1")],
        [("created", "b-2"), ("created", "b-3"), ("duplicate", "b-1"), ("created", "b-4"), ("duplicate", "b-4"),
         ("created", "b-5")],
        [("created", "b-6"), ("created", "b-7"), ("created", "b-8")],
    ]
    rows, convs = _visible(app)
    assert [r[0] for r in rows] == ["b-4", "b-1", "b-2", "b-3", "b-5", "b-6", "b-7", "b-8"]
    by_customer = {c[0]: c for c in convs}
    assert by_customer[CUSTOMER][1:5] == ("after the echo", "in", 1, "open")
    assert by_customer["9100000000000002"][1:5] == ("and more", "in", 3, "open")
    assert by_customer["9100000000000002"][7:] == ("23850000000000009", "Sale")
    assert by_customer["9100000000000003"][1:5] == ("new here", "in", 1, "open")
    assert [r[7] for r in rows if r[0] == "b-3"] == [[("image", "https://lookaside.fbsbx.com/p")]]


def test_missing_json_values_are_sql_null_on_every_path(app, client, account, second_account):
    deliver(client, fixture("text"))  # one by one
    deliver(client, fixture("multi_entry_batch"))  # together
    deliver(client, fixture("ad_referral"))
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT mid, referral IS NULL, previous_texts IS NULL FROM messages ORDER BY id")).all()
    assert [(r[1], r[2]) for r in rows] == [(True, True)] * 4 + [(False, True)]


@pytest.mark.parametrize("together", [1, 3], ids=["alone", "in a batch"])
def test_a_stored_mid_from_a_new_sender_opens_no_conversation(app, client, account, together):
    deliver(client, envelope(message("m-known", "hi", ts=T0)))
    stranger = "9100000000000077"
    others = [message(f"m-new-{n}", "new", customer=f"91000000000001{n:02d}", ts=T0 + n) for n in range(together - 1)]
    deliver(client, envelope(message("m-known", "hi", customer=stranger, ts=T0), *others))
    assert [(r["action"], r["mid"]) for r in last_results(app)][:1] == [("duplicate", "m-known")]
    assert stranger not in {c.customer_igsid for c in conversations(app)}
    assert len(conversations(app)) == together  # the known customer's, and one per new message


# --- Impossible values and the third place a referral arrives (issue 12, items 8 and 10) -------

def test_a_timestamp_far_in_the_future_is_clamped_and_does_not_pin_the_conversation(app, client, account):
    year_5138 = 99_999_999_999_999  # ms: the year 5138
    deliver(client, envelope(message("m-future", "from the future", customer="9100000000000011", ts=year_5138)))
    deliver(client, envelope(message("m-now", "written later", customer="9100000000000012", ts=T0 + 60_000)))
    future = [m for m in messages(app) if m.mid == "m-future"][0]
    assert future.meta_timestamp < T0 + 400 * 24 * 3600 * 1000  # the arrival time, not 5138
    # The list puts the conversation that really wrote last first.
    rows = sorted(conversations(app), key=lambda c: c.last_message_at, reverse=True)
    assert [c.last_message_preview for c in rows][0] in ("written later", "from the future")
    assert rows[0].last_message_at.year < 2100 and rows[1].last_message_at.year < 2100
    marked = deliveries(app)[0]
    assert marked.status == "processed"
    assert "timestamp 99999999999999 is in the future" in marked.error
    assert "arrival time" in marked.results[0]["note"]


def test_a_negative_customer_id_is_refused_and_the_delivery_says_so(app, client, account):
    deliver(client, envelope(message("m-neg", "hi", customer=-42)))
    deliver(client, envelope(message("m-neg2", "hi", customer="-43")))
    assert messages(app) == [] and conversations(app) == []
    for delivery, shown in zip(deliveries(app), ("-42", "'-43'")):
        assert delivery.status == "ignored"
        assert f"sender id {shown} is not an Instagram id; refused" in delivery.error


def test_a_click_to_message_referral_beside_the_message_gives_the_conversation_its_ad(app, client, account):
    ad = {"ref": "spring", "ad_id": "23850000000000007", "source": "ADS", "type": "OPEN_THREAD",
          "ads_context_data": {"ad_title": "Linen dresses", "post_id": "18000000000000077"}}
    item = message("m-ctm", "Is this still available?")
    item["referral"] = ad  # at the messaging level, beside `message`
    deliver(client, envelope(item))
    [msg] = messages(app)
    assert msg.referral == ad
    [conversation] = conversations(app)
    assert (conversation.last_ad_id, conversation.last_ad_title) == ("23850000000000007", "Linen dresses")


def test_a_referral_on_a_postback_is_kept(app, client, account):
    ad = {"ad_id": "23850000000000008", "source": "ADS", "type": "OPEN_THREAD",
          "ads_context_data": {"ad_title": "Gift cards"}}
    item = {"sender": {"id": CUSTOMER}, "recipient": {"id": ACCOUNT}, "timestamp": T0,
            "postback": {"mid": "m-pb", "title": "Get started", "payload": "START", "referral": ad}}
    deliver(client, envelope(item))
    [msg] = messages(app)
    assert (msg.text, msg.referral) == ("Get started", ad)
    [conversation] = conversations(app)
    assert conversation.last_ad_title == "Gift cards"
