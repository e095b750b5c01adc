"""The applier: the webhook only stores; the worker's applier applies, once, in Meta's order.

These tests turn WEBHOOK_APPLY_INLINE off (the production setting): a POST answers
"received" and nothing is applied until an applier runs.
"""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from inbox import create_app
from inbox.extensions import db, get_redis, rkey
from inbox.models import Conversation, Message, WebhookDelivery, utcnow
from inbox.services import applier
from inbox.services.deliveries import store_delivery
from tests.support.settings import APP_SECRET
from tests.support.stored import deliveries, messages
from tests.support.waiting import wait_until
from tests.support.webhooks import T0, encode, envelope, message, reaction, sign, unsend


@pytest.fixture
def queued_app(app_config, app):
    """The app as production runs it: the webhook stores and wakes, the applier applies."""
    app_config["WEBHOOK_APPLY_INLINE"] = False
    app_config["APPLIER_POLL_SECONDS"] = 30.0  # a wake-up, not the poll, must start it
    return create_app(app_config)


@pytest.fixture
def running_applier(queued_app):
    stop = threading.Event()
    thread = applier.start_applier(queued_app, stop)
    yield thread
    stop.set()
    thread.join(timeout=35)
    with queued_app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def post(app, payload) -> dict:
    body = encode(payload)
    response = app.test_client().post("/webhooks/instagram", data=body,
                                      headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert response.status_code == 200
    return response.get_json()


def test_the_webhook_only_stores_and_the_applier_applies_it_when_woken(queued_app, account):
    answer = post(queued_app, envelope(message("m-1", "Is the blue one back?")))
    assert answer["status"] == "received"
    assert messages(queued_app) == []  # acknowledged, not applied by the web process
    assert deliveries(queued_app)[0].status == "received"

    stop = threading.Event()
    thread = applier.start_applier(queued_app, stop)
    try:
        wait_until(lambda: [m.text for m in messages(queued_app)] == ["Is the blue one back?"], timeout=20,
                   what="the waiting delivery applied when the applier started")
        post(queued_app, envelope(message("m-2", "size M", ts=T0 + 1000)))
        # Woken (the poll is 30 s away): it appears while the test waits far less than that.
        wait_until(lambda: len(messages(queued_app)) == 2, timeout=15, what="the woken applier")
    finally:
        stop.set()
        thread.join(timeout=35)
    [first, second] = deliveries(queued_app)
    assert (first.status, first.attempts, second.status, second.attempts) == ("processed", 1, "processed", 1)
    assert first.claimed_by.startswith("applier.")


def test_a_delivery_whose_wake_up_was_lost_is_applied_by_the_poll(app_config, app, account):
    app_config["WEBHOOK_APPLY_INLINE"] = False
    app_config["APPLIER_POLL_SECONDS"] = 1.0
    quiet = create_app(app_config)
    with quiet.app_context():
        store_delivery(encode(envelope(message("m-lost", "no wake-up"))), "sha256=x")  # no wake(): Redis lost it
    stop = threading.Event()
    thread = applier.start_applier(quiet, stop)
    try:
        wait_until(lambda: [m.text for m in messages(quiet)] == ["no wake-up"], timeout=15, what="the poll")
    finally:
        stop.set()
        thread.join(timeout=5)


def test_a_burst_is_applied_in_batches_in_meta_order_whatever_the_arrival_order(queued_app, account):
    # 150 single-message deliveries for 3 customers, arriving newest first.
    sent = [(f"m-{i}", f"c{i % 3}", T0 + i * 1000) for i in range(150)]
    with queued_app.app_context():
        for mid, customer, ts in reversed(sent):
            store_delivery(encode(envelope(message(mid, f"text {mid}", customer=f"91000000000000{customer[1]}",
                                                   ts=ts))), "sha256=x")
        assert applier.drain("applier.test", limit=40) == 150
    stored = messages(queued_app)
    assert len(stored) == 150
    with queued_app.app_context():
        rows = db.session.scalars(select(Conversation).order_by(Conversation.customer_igsid)).all()
        for n, conversation in enumerate(rows):
            newest = max((s for s in sent if s[1] == f"c{n}"), key=lambda s: s[2])
            assert conversation.last_message_preview == f"text {newest[0]}"  # Meta's time decides, not arrival
            assert conversation.unread_count == 50
            thread = db.session.scalars(select(Message.mid).where(Message.conversation_id == conversation.id)
                                        .order_by(Message.meta_timestamp)).all()
            assert thread == [s[0] for s in sent if s[1] == f"c{n}"]
    assert {d.status for d in deliveries(queued_app)} == {"processed"}


def test_echoes_unsends_and_reactions_keep_their_meaning_through_the_applier(queued_app, account):
    with queued_app.app_context():
        for payload in (envelope(message("m-a", "the red one?", ts=T0)),
                        envelope(reaction("m-a", ts=T0 + 2000)),
                        envelope(unsend("m-b", ts=T0 + 3000)),  # unsend before its message
                        envelope(message("m-b", "oops", ts=T0 + 1000)),
                        envelope(message("m-app", "typed in the app", echo=True, ts=T0 + 4000))):
            store_delivery(encode(payload), "sha256=x")
        applier.drain("applier.test")
    by_mid = {m.mid: m for m in messages(queued_app)}
    assert by_mid["m-b"].is_deleted
    assert (by_mid["m-app"].direction, by_mid["m-app"].sender_kind) == ("out", "instagram_app")
    with queued_app.app_context():
        reacted = db.session.get(Message, by_mid["m-a"].id)
        assert [r.reaction for r in reacted.reactions] == ["love"]


def test_a_dead_appliers_claim_lapses_and_the_delivery_is_applied_once(queued_app, account):
    with queued_app.app_context():
        delivery_id = store_delivery(encode(envelope(message("m-dead", "hello?"))), "sha256=x",
                                     claimed_by="applier.dead")
        assert applier.drain("applier.alive") == 0  # a live claim is left alone
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                           .values(claimed_at=utcnow() - timedelta(hours=1)))
        db.session.commit()
        assert applier.drain("applier.alive") == 1
        assert applier.drain("applier.alive") == 0
    [delivery] = deliveries(queued_app)
    assert (delivery.status, delivery.attempts, delivery.claimed_by) == ("processed", 1, "applier.alive")
    assert [m.mid for m in messages(queued_app)] == ["m-dead"]


def test_the_apply_lag_is_on_the_deliveries_page_and_healthz_says_when_the_applier_is_behind(
        queued_app, client, auth, factory, account):
    with queued_app.app_context():
        store_delivery(encode(envelope(message("m-1", "hi"))), "sha256=x")
        applier.drain("applier.test")
        late = store_delivery(encode(envelope(message("m-2", "anyone?"))), "sha256=x")
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == late)
                           .values(received_at=utcnow() - timedelta(minutes=3)))
        db.session.commit()
        get_redis(queued_app).set(rkey("worker", "heartbeat", "t", app=queued_app), "1", ex=30)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["applier"].startswith("behind: 1 deliveries waiting, the oldest for 18")
    auth.login(factory.user(superadmin=True))
    page = client.get("/admin/deliveries/").get_data(as_text=True)
    assert 'id="apply-lag"' in page and "The applier is behind" in page
    assert '<dd data-figure="waiting">1</dd>' in page
    with queued_app.app_context():
        applier.drain("applier.test")
    assert client.get("/healthz").get_json()["applier"] == "ok"
    page = client.get("/admin/deliveries/").get_data(as_text=True)
    assert "The applier is behind" not in page and '<dd data-figure="waiting">0</dd>' in page


@pytest.mark.postgres("two appliers race with FOR UPDATE SKIP LOCKED")
def test_two_appliers_racing_apply_each_delivery_once_and_keep_each_conversation_in_order(queued_app, account):
    rng = random.Random(7)
    sent = [(f"m-{i}", 9100000000000100 + i % 7, T0 + i * 1000) for i in range(400)]
    arrival = sent[:]
    rng.shuffle(arrival)
    with queued_app.app_context():
        for mid, customer, ts in arrival:
            store_delivery(encode(envelope(message(mid, f"text {mid}", customer=str(customer), ts=ts))), "sha256=x")
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(owner: str) -> None:
        try:
            with queued_app.app_context():
                counts[owner] = applier.drain(owner, limit=10)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"applier.{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(counts.values()) == 400  # each delivery applied by exactly one of them
    stored = messages(queued_app)
    assert sorted(m.mid for m in stored) == sorted(s[0] for s in sent)  # each message once
    with queued_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                                 .where(WebhookDelivery.status == "processed", WebhookDelivery.attempts == 1)) == 400
        for conversation in db.session.scalars(select(Conversation)):
            theirs = [s for s in sent if str(s[1]) == conversation.customer_igsid]
            assert conversation.last_message_preview == f"text {max(theirs, key=lambda s: s[2])[0]}"
            assert conversation.unread_count == len(theirs)


def test_the_acknowledgement_is_answered_without_the_apps_request_machinery(queued_app, account):
    seen: list[str] = []
    queued_app.before_request(lambda: seen.append("before_request"))
    body = encode(envelope(message("m-ack", "hello")))
    client = queued_app.test_client()
    response = client.post("/webhooks/instagram", data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert (response.status_code, response.get_json()["status"]) == (200, "received")
    assert "Set-Cookie" not in response.headers and seen == []  # no session, no hooks
    bad = client.post("/webhooks/instagram", data=body, headers={"X-Hub-Signature-256": sign(body, "wrong")})
    assert bad.status_code == 403
    assert [d.status for d in deliveries(queued_app)] == ["received"]
    assert client.get("/webhooks/instagram").status_code == 403 and seen == ["before_request"]  # the rest: Flask
