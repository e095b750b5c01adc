"""The simulator's webhook sender, checked by an independent receiver over real HTTP.

The receiver (tests/support/webhooks.Receiver) is deliberately not our webhook endpoint: it
verifies the handshake token and recomputes both signatures with its own HMAC over the raw
bytes it read.
"""

from __future__ import annotations

import json
import threading

import pytest

from inbox.services.graph import GraphClient
from inbox.sim import Simulator, WebhookRefused
from tests.support.settings import APP_SECRET, VERIFY_TOKEN
from tests.support.servers import ThreadedServer
from tests.support.sim import connect_account, wire_webhooks
from tests.support.webhooks import Receiver


@pytest.fixture
def receiver():
    r = Receiver(APP_SECRET, VERIFY_TOKEN)
    server = ThreadedServer(r).start()
    r.url = server.url
    yield r
    server.stop()


@pytest.fixture
def wired(sim, receiver):
    wire_webhooks(sim, receiver.url, "/hook")
    return sim


def test_signed_delivery_with_non_ascii_escaped_like_meta(wired, sim_shop, receiver):
    alice = sim_shop.add_customer("alice")
    text = "Grüße 👋 ½ price/size <b>"

    sent = alice.sends_text(text)

    assert sent.delivery.status == 200 and sent.delivery.ok
    [post] = receiver.posts
    assert post["valid"]  # both headers match an HMAC over the exact bytes received
    assert post["content_type"] == "application/json"
    raw = post["raw"]
    assert max(raw) < 128  # no raw UTF-8 on the wire
    assert b"Gr\\u00fc\\u00dfe \\ud83d\\udc4b \\u00bd price\\/size <b>" in raw
    body = json.loads(raw)
    assert body["object"] == "instagram"
    [entry] = body["entry"]
    assert entry["id"] == sim_shop.ig_user_id and isinstance(entry["time"], int)
    [event] = entry["messaging"]
    assert event["sender"] == {"id": alice.igsid} and event["recipient"] == {"id": sim_shop.ig_user_id}
    assert event["message"] == {"mid": sent.mid, "text": text}
    assert event["timestamp"] > 1_600_000_000_000  # milliseconds


def test_wrong_verify_token_fails_the_handshake_and_nothing_is_delivered(sim, sim_shop, receiver):
    alice = sim_shop.add_customer("alice")
    result = sim.connect_webhooks(receiver.url + "/hook", verify_token="not-the-token")

    assert not result.ok and result.status == 403
    with pytest.raises(WebhookRefused):
        alice.sends_text("hello?")
    assert receiver.posts == []

    assert sim.connect_webhooks(receiver.url + "/hook", verify_token=VERIFY_TOKEN).ok
    alice.sends_text("hello again")
    assert [e["message"]["text"] for e in receiver.events()] == ["hello again"]


def test_a_receiver_with_another_secret_rejects_the_signature(sim, sim_shop, receiver):
    receiver.secret = b"another-secret"
    wire_webhooks(sim, receiver.url, "/hook")
    sent = sim_shop.add_customer("alice").sends_text("hi")
    assert not receiver.posts[0]["valid"]
    assert sent.delivery.state == "failed" and sent.delivery.status == 403


def test_every_send_is_echoed_with_its_message_id(wired, app, sim, factory, receiver):
    connected = connect_account(factory, sim, "echoshop")
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    with app.app_context():
        client = GraphClient.for_account(connected.account)
        text = client.send_text(alice.igsid, "Thanks! ✨")
        image = client.send_attachment(alice.igsid, "image", "https://example.com/a.jpg")
    sim.settle()

    # Each echo goes out on its own after its send answered: like Meta's, their order is not promised.
    echoes = {e["message"]["mid"]: e for e in receiver.events()}
    assert sorted(echoes) == sorted([text.message_id, image.message_id])
    assert all(e["message"]["is_echo"] is True for e in echoes.values())
    text_echo, image_echo = echoes[text.message_id], echoes[image.message_id]
    assert text_echo["sender"] == {"id": connected.ig.ig_user_id} and text_echo["recipient"] == {"id": alice.igsid}
    assert text_echo["message"]["text"] == "Thanks! ✨"
    assert image_echo["message"]["attachments"][0]["type"] == "image"


def test_echo_can_arrive_before_the_send_answers(wired, app, sim, factory, receiver):
    connected = connect_account(factory, sim, "raceshop")
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    answered = threading.Event()
    seen_before_answer = []
    receiver.on_post = lambda raw: seen_before_answer.append(not answered.is_set())
    sim.faults.echo_before_response = True

    with app.app_context():
        result = GraphClient.for_account(connected.account).send_text(alice.igsid, "Coming right up")
    answered.set()

    assert seen_before_answer == [True]
    assert receiver.events()[0]["message"]["mid"] == result.message_id


def test_the_owner_typing_in_the_app_is_an_echo_with_a_new_mid(wired, sim_shop, receiver):
    alice = sim_shop.add_customer("alice")
    first = alice.sends_text("hi")
    typed = sim_shop.types_in_app(alice, "Hello from my phone")

    echo = receiver.events()[1]
    assert echo["message"] == {"mid": typed.mid, "text": "Hello from my phone", "is_echo": True}
    assert typed.mid != first.mid
    assert echo["sender"] == {"id": sim_shop.ig_user_id}
    assert [(r.origin, r.text) for r in alice.received] == [("app", "Hello from my phone")]


def test_duplicate_deliveries_send_the_same_bytes_twice(wired, sim_shop, receiver):
    sim = wired
    sim.faults.duplicate_rate = 1.0
    sim_shop.add_customer("alice").sends_text("once")
    assert len(receiver.posts) == 2
    assert receiver.posts[0]["raw"] == receiver.posts[1]["raw"]
    assert sim.deliveries[1].duplicate_of == sim.deliveries[0].id


def test_retries_with_backoff_after_a_non_200(wired, sim_shop, receiver):
    sim = wired
    sim.faults.retry_delays = (0.05, 0.1, 0.1)
    receiver.answers.extend([500, 503])

    sent = sim_shop.add_customer("alice").sends_text("are you there?")
    assert sent.delivery.state == "retrying"
    sim.settle()

    assert [p["status"] for p in receiver.posts] == [500, 503, 200]
    assert len({p["raw"] for p in receiver.posts}) == 1  # the very same body each time
    assert sent.delivery.state == "delivered" and len(sent.delivery.attempts) == 3


def test_gives_up_after_the_last_retry(wired, sim_shop, receiver):
    sim = wired
    sim.faults.retry_delays = (0.01,)
    receiver.answers.extend([500] * 5)
    sent = sim_shop.add_customer("alice").sends_text("lost?")
    sim.settle()
    assert len(receiver.posts) == 2
    assert sent.delivery.state == "failed" and sent.delivery.reason == "HTTP 500"


def test_continuous_failure_unsubscribes_until_subscribed_again(wired, app, sim, factory, receiver):
    connected = connect_account(factory, sim, "flaky")
    alice = connected.ig.add_customer("alice")
    receiver.answers.extend([500, 500])
    alice.sends_text("one")
    sim.advance(hours=2)  # Meta gives up on a callback failing for an hour
    second = alice.sends_text("two")
    assert second.delivery.reason == "the subscription was disabled after continuous failures"

    alice.sends_text("three")  # not subscribed: Meta sends nothing
    assert len(receiver.posts) == 2

    with app.app_context():
        assert GraphClient.for_account(connected.account).ensure_subscribed()
    alice.sends_text("four")
    assert [e["message"]["text"] for e in receiver.events()] == ["one", "two", "four"]


def test_several_entries_batched_in_one_post(wired, receiver):
    sim = wired
    shop_a, shop_b = sim.add_account("a"), sim.add_account("b")
    alice, bob = shop_a.add_customer("alice"), shop_b.add_customer("bob")

    with sim.hold(batch=True) as held:
        alice.sends_text("from alice")
        bob.sends_text("from bob")
        alice.sends_text("alice again")

    [post] = receiver.posts
    assert post["valid"] and held.deliveries[0].ok
    entries = json.loads(post["raw"])["entry"]
    assert [e["id"] for e in entries] == [shop_a.ig_user_id, shop_b.ig_user_id, shop_a.ig_user_id]
    assert all(len(e["messaging"]) == 1 for e in entries)


def test_several_events_packed_in_one_entry(wired, sim_shop, receiver):
    sim = wired
    alice = sim_shop.add_customer("alice")
    with sim.hold(batch=True, pack=True):
        first = alice.sends_text("a")
        alice.reacts(first.mid, "like")
    [entry] = receiver.payloads()[0]["entry"]
    assert [sorted(set(e) - {"sender", "recipient", "timestamp"}) for e in entry["messaging"]] == [["message"],
                                                                                                   ["reaction"]]


def test_out_of_order_delivery(wired, sim_shop, receiver):
    sim = wired
    alice = sim_shop.add_customer("alice")
    with sim.hold(order="reversed"):
        for text in ("first", "second", "third"):
            alice.sends_text(text)
    assert [e["message"]["text"] for e in receiver.events()] == ["third", "second", "first"]
    assert len(receiver.posts) == 3


def test_background_delivery_gathers_events_into_batches(receiver):
    with Simulator(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, sync=False).serve() as sim:
        sim.faults.batch_window = 0.2
        sim.faults.out_of_order = True
        wire_webhooks(sim, receiver.url, "/hook")
        alice = sim.add_account("shop").add_customer("alice")
        for text in ("1", "2", "3"):
            assert alice.sends_text(text).delivery is None  # queued, not sent yet
        sim.settle()
    assert len(receiver.posts) == 1 and receiver.posts[0]["valid"]
    assert [e["message"]["text"] for e in receiver.events()] == ["3", "2", "1"]


# --- What each customer action looks like on the wire (Instagram's webhook event shapes) ---

def _msg(event):
    return event["message"]


ACTION_CASES = {
    "image": (lambda c, x: c.sends_attachment("image"),
              lambda e, x: _msg(e)["attachments"][0]["type"] == "image" and "url" in _msg(e)["attachments"][0]["payload"]),
    "two videos": (lambda c, x: c.sends_attachment("video", count=2),
                   lambda e, x: [a["type"] for a in _msg(e)["attachments"]] == ["video", "video"]),
    "audio": (lambda c, x: c.sends_attachment("audio"), lambda e, x: _msg(e)["attachments"][0]["type"] == "audio"),
    "file": (lambda c, x: c.sends_attachment("file"), lambda e, x: _msg(e)["attachments"][0]["type"] == "file"),
    "sticker": (lambda c, x: c.sends_sticker(), lambda e, x: "sticker_id" in _msg(e)["attachments"][0]["payload"]),
    "legacy share": (lambda c, x: c.sends_share(), lambda e, x: _msg(e)["attachments"][0]["type"] == "share"),
    "ig_post (ig_post_media_id)": (
        lambda c, x: c.shares_post(x["post"]),
        lambda e, x: _msg(e)["attachments"][0] == {"type": "ig_post", "payload": {
            "url": _msg(e)["attachments"][0]["payload"]["url"], "title": "Blue dress", "ig_post_media_id": x["post"].id}}),
    "ig_post (id)": (lambda c, x: c.shares_post(x["post"], key="id"),
                     lambda e, x: _msg(e)["attachments"][0]["payload"]["id"] == x["post"].id),
    "ig_reel": (lambda c, x: c.shares_reel(caption="Reel caption"),
                lambda e, x: set(_msg(e)["attachments"][0]["payload"]) == {"url", "title", "reel_video_id"}),
    "reel": (lambda c, x: c.shares_reel(kind="reel"), lambda e, x: _msg(e)["attachments"][0]["type"] == "reel"),
    "ig_story": (lambda c, x: c.sends_ig_story(),
                 lambda e, x: set(_msg(e)["attachments"][0]["payload"]) == {"story_media_id", "story_media_url"}),
    "ephemeral": (lambda c, x: c.sends_ephemeral(), lambda e, x: _msg(e)["attachments"] == [{"type": "ephemeral"}]),
    "unsupported": (lambda c, x: c.sends_unsupported(), lambda e, x: _msg(e)["is_unsupported"] is True),
    "unknown type": (lambda c, x: c.sends_unknown("brand_new_thing"),
                     lambda e, x: _msg(e)["attachments"][0]["type"] == "brand_new_thing"),
    "fallback": (lambda c, x: c.sends_fallback(), lambda e, x: _msg(e)["attachments"][0]["type"] == "fallback"
                 and _msg(e)["text"]),
    "product template": (lambda c, x: c.sends_product_template("77"),
                         lambda e, x: _msg(e)["attachments"][0]["payload"]["product"]["elements"][0]["id"] == "77"),
    "story mention": (lambda c, x: c.mentions_in_story(),
                      lambda e, x: _msg(e)["attachments"][0]["type"] == "story_mention" and "text" not in _msg(e)),
    "story reply": (lambda c, x: c.replies_to_story("nice!"),
                    lambda e, x: set(_msg(e)["reply_to"]["story"]) == {"url", "id"} and _msg(e)["text"] == "nice!"),
    "inline reply": (lambda c, x: c.replies_to(x["first"], "this"),
                     lambda e, x: _msg(e)["reply_to"] == {"mid": x["first"]}),
    "quick reply": (lambda c, x: c.taps_quick_reply("Yes", "YES_PAYLOAD"),
                    lambda e, x: _msg(e)["quick_reply"] == {"payload": "YES_PAYLOAD"}),
    "ad referral": (lambda c, x: c.clicks_ad(post=x["post"], ad_id="2385000000000001", ref="summer_1"),
                    lambda e, x: _msg(e)["referral"]["source"] == "ADS"
                    and _msg(e)["referral"]["ad_id"] == "2385000000000001"
                    and _msg(e)["referral"]["ads_context_data"]["post_id"] == x["post"].id
                    and _msg(e)["referral"]["ref"] == "summer_1"),
    "shop product referral": (lambda c, x: c.asks_about_product("9001"),
                              lambda e, x: _msg(e)["referral"] == {"product": {"id": "9001"}}),
    "react": (lambda c, x: c.reacts(x["first"], "love"),
              lambda e, x: e["reaction"] == {"mid": x["first"], "action": "react", "reaction": "love",
                                             "emoji": "\u2764\ufe0f"}),
    "unreact": (lambda c, x: c.unreacts(x["first"]),
                lambda e, x: e["reaction"] == {"mid": x["first"], "action": "unreact"}),
    "seen": (lambda c, x: c.sees(x["reply"]), lambda e, x: e["read"] == {"mid": x["reply"]}),
    "edit": (lambda c, x: c.edits(x["first"], "hello, edited"),
             lambda e, x: e["message_edit"] == {"mid": x["first"], "text": "hello, edited", "num_edit": 1}),
    "unsend": (lambda c, x: c.unsends(x["first"]),
               lambda e, x: _msg(e) == {"mid": x["first"], "is_deleted": True}),
    "postback": (lambda c, x: c.taps_postback("Track my order", "TRACK"),
                 lambda e, x: e["postback"]["payload"] == "TRACK" and e["postback"]["mid"]),
    "ig.me referral": (lambda c, x: c.follows_ig_me_link("promo42"),
                       lambda e, x: e["referral"] == {"ref": "promo42", "source": "IGME_LINK", "type": "OPEN_THREAD"}),
}


@pytest.mark.parametrize("case", list(ACTION_CASES))
def test_customer_action_payloads(wired, sim_shop, receiver, case):
    action, check = ACTION_CASES[case]
    alice = sim_shop.add_customer("alice")
    first = alice.sends_text("hello", deliver=False)
    sim_shop.types_in_app(alice, "hi there", deliver=False)
    context = {"first": first.mid, "post": sim_shop.add_post("Blue dress"),
               "reply": alice.received[-1].mid}

    sent = action(alice, context)

    [event] = receiver.events()
    assert receiver.posts[0]["valid"]
    assert event["sender"] == {"id": alice.igsid} and event["recipient"] == {"id": sim_shop.ig_user_id}
    assert check(event, context), json.dumps(event)
    assert sent.event == event
