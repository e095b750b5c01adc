"""End to end with the Meta simulator over real HTTP: what simulated customers do ends up right in the database."""

from __future__ import annotations

import uuid

import pytest

from inbox.models import Message
from inbox.services.graph import GraphClient
from inbox.services.ingest.echoes import reconcile_sent
from tests.support.stored import conversations, deliveries, messages


def by_mid(app) -> dict[str, Message]:
    return {m.mid: m for m in messages(app)}


def all_processed(app) -> bool:
    return all(d.status == "processed" for d in deliveries(app))


def test_every_kind_of_customer_message_lands(sim_webhooks, connected, app):
    shop = connected.ig
    alice = shop.add_customer("alice", name="Alice")
    post = shop.add_post("The red linen dress RD-1")
    sent = {
        "text": alice.sends_text("Hi! Is the red dress still available?"),
        "images": alice.sends_attachment("image", count=2),
        "video": alice.sends_attachment("video"),
        "audio": alice.sends_attachment("audio"),
        "file": alice.sends_attachment("file"),
        "sticker": alice.sends_sticker(),
        "share": alice.sends_share(),
        "ig_post": alice.shares_post(post),
        "ig_post_id": alice.shares_post(post, key="id"),
        "ig_reel": alice.shares_reel(),
        "reel": alice.shares_reel(kind="reel"),
        "ig_story": alice.sends_ig_story(),
        "ephemeral": alice.sends_ephemeral(),
        "unsupported": alice.sends_unsupported(),
        "unknown": alice.sends_unknown(),
        "fallback": alice.sends_fallback(),
        "template": alice.sends_product_template(),
        "story_mention": alice.mentions_in_story(),
        "story_reply": alice.replies_to_story("Love this colour"),
        "quick_reply": alice.taps_quick_reply("Size M", "SIZE_M"),
        "ad": alice.clicks_ad(post=post),
        "product": alice.asks_about_product("7000000000000002"),
        "postback": alice.taps_postback("Track my order", "TRACK"),
    }
    sent["reply"] = alice.replies_to(sent["text"].mid, "that one")
    assert all(s.delivery.ok for s in sent.values())
    assert all_processed(app)

    rows = by_mid(app)
    assert set(rows) == {s.mid for s in sent.values()}  # every message, once
    kinds = {name: [a.type for a in rows[s.mid].attachments] for name, s in sent.items()}
    assert kinds["images"] == ["image", "image"] and kinds["video"] == ["video"] and kinds["audio"] == ["audio"]
    assert kinds["file"] == ["file"] and kinds["share"] == ["share"] and kinds["ig_reel"] == ["ig_reel"]
    assert kinds["reel"] == ["reel"] and kinds["ig_story"] == ["ig_story"] and kinds["ephemeral"] == ["ephemeral"]
    assert kinds["unknown"] == ["unknown"] and kinds["fallback"] == ["fallback"] and kinds["template"] == ["template"]
    assert kinds["story_mention"] == ["story_mention"] and kinds["sticker"] in (["sticker"], ["image"])
    for key in ("ig_post", "ig_post_id"):  # both key variants give the post's media id and caption
        [attachment] = rows[sent[key].mid].attachments
        assert (attachment.type, attachment.media_id) == ("ig_post", post.id)
        assert attachment.title == "The red linen dress RD-1"
    assert rows[sent["unsupported"].mid].is_unsupported
    assert rows[sent["reply"].mid].reply_to_mid == sent["text"].mid
    assert rows[sent["story_reply"].mid].reply_to_story_id
    assert rows[sent["quick_reply"].mid].quick_reply_payload == "SIZE_M"
    assert rows[sent["ad"].mid].referral["ads_context_data"]["post_id"] == post.id
    assert rows[sent["product"].mid].referral == {"product": {"id": "7000000000000002"}}
    assert rows[sent["postback"].mid].postback_payload == "TRACK"

    [conversation] = conversations(app)
    assert conversation.customer_igsid == alice.igsid and conversation.unread_count == len(sent)
    assert conversation.last_ad_id == sent["ad"].event["message"]["referral"]["ad_id"]
    assert conversation.last_message_preview == "that one"


def test_echoes_reactions_edits_unsends_and_seen_receipts(sim_webhooks, connected, app):
    shop = connected.ig
    alice = shop.add_customer("alice")
    question = alice.sends_text("Do you ship to Spain?")
    typo = alice.sends_text("Also, do you hvae it in M?")
    oops = alice.sends_text("wrong chat, sorry")
    answer = shop.types_in_app(alice, "Yes, we ship everywhere in the EU.")
    again = shop.types_in_app(alice, "Yes, we ship everywhere in the EU.")  # the same text twice: two messages
    alice.reacts(answer.mid, "love")
    alice.reacts(again.mid, "like")
    alice.unreacts(again.mid)
    alice.edits(typo.mid, "Also, do you have it in M?")
    alice.unsends(oops.mid)
    alice.sees(answer.mid)
    assert all_processed(app)

    rows = by_mid(app)
    assert [(rows[m].direction, rows[m].sender_kind) for m in (answer.mid, again.mid)] == [
        ("out", "instagram_app"), ("out", "instagram_app")]
    assert [r.emoji or r.reaction for r in rows[answer.mid].reactions] and rows[again.mid].reactions == []
    assert (rows[typo.mid].text, rows[typo.mid].edit_count) == ("Also, do you have it in M?", 1)
    assert rows[typo.mid].previous_texts == ["Also, do you hvae it in M?"]
    assert rows[oops.mid].is_deleted and rows[oops.mid].text is None
    assert rows[answer.mid].status == "seen" and rows[again.mid].status == "sent"
    assert rows[question.mid].direction == "in"
    assert conversations(app)[0].unread_count == 0  # the owner answered in the app


@pytest.mark.parametrize("echo_first", [False, True], ids=["send answers first", "echo first"])
def test_our_send_and_its_echo_make_one_message(sim_webhooks, connected, app, factory, echo_first):
    sim_webhooks.settings.faults.echo_before_response = echo_first
    sim_webhooks.settings.faults.duplicate_rate = 1.0  # and every webhook POST comes twice
    shop = connected.ig
    alice = shop.add_customer("alice")
    alice.sends_text("Is the red dress in stock?")
    for text in ("Yes, in M and L.", "Yes, in M and L."):  # staff double-sends the same words
        # What the composer and the send job do: a pending row, the Send API, then reconcile.
        [conversation] = conversations(app)
        pending = factory.message(conversation, text, out=True, status="pending", client_token=uuid.uuid4().hex)
        with app.app_context():
            result = GraphClient.for_account(connected.account).send_text(alice.igsid, text)
            reconcile_sent(pending.id, result.message_id)
    sim_webhooks.settle()
    assert alice.received_texts == ["Yes, in M and L.", "Yes, in M and L."]
    outgoing = messages(app, direction="out")
    assert [(m.sender_kind, m.status, m.text) for m in outgoing] == [("staff", "sent", "Yes, in M and L.")] * 2
    assert len({m.mid for m in outgoing}) == 2 and all(m.mid for m in outgoing)
    echoes = [r["action"] for d in deliveries(app) for r in d.results if r["type"] == "echo"]
    assert len(echoes) == 4 and set(echoes) <= {"claimed", "confirmed"}  # both echoes arrived, each twice
    if echo_first:  # each echo found our pending row by its content, before the Send API answered
        assert echoes.count("claimed") == 2


@pytest.mark.parametrize("order", ["sent", "reversed", "shuffled"])
def test_batched_and_reordered_deliveries_end_the_same(sim_webhooks, connected, app, order):
    shop = connected.ig
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    with sim_webhooks.hold(batch=True, order=order):
        first = alice.sends_text("first")
        edited = alice.sends_text("secnd")
        gone = bob.sends_text("oops")
        reply = shop.types_in_app(alice, "hello!")
        alice.edits(edited.mid, "second")
        bob.unsends(gone.mid)
        alice.reacts(reply.mid)
        alice.sees(reply.mid)
    assert all(d.status in ("processed", "failed") for d in deliveries(app))
    rows = by_mid(app)
    assert rows[first.mid].text == "first"
    assert rows[edited.mid].text == "second"
    assert rows[gone.mid].is_deleted and rows[gone.mid].text is None
    assert rows[reply.mid].sender_kind == "instagram_app"
    if order == "sent":  # out of order, a reaction or receipt for a message not yet stored is recorded as ignored
        assert [r.reaction for r in rows[reply.mid].reactions] == ["love"] and rows[reply.mid].status == "seen"
    assert sorted(c.customer_igsid for c in conversations(app)) == sorted([alice.igsid, bob.igsid])
