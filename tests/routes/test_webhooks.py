"""The webhook endpoint: handshake, signatures over the raw bytes, size limit, storage first."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from inbox import create_app
from inbox.extensions import db
from inbox.models import Message, WebhookDelivery
from tests.support.settings import APP_SECRET, VERIFY_TOKEN
from tests.support.databases import is_postgres
from inbox.services.deliveries import recover_deliveries, replay_delivery
from inbox.services import obligations
from tests.support.webhooks import T0, encode, envelope, fixture, message, post, sign


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_handshake_echoes_the_challenge_for_the_right_token(client):
    response = client.get("/webhooks/instagram", query_string={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "1158201444"
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize("params", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
])
def test_handshake_with_a_wrong_token_or_mode_is_refused(client, params):
    response = client.get("/webhooks/instagram", query_string=params)
    assert response.status_code == 403
    assert "1" not in response.get_data(as_text=True)


def test_handshake_challenge_is_never_served_as_html(client):
    response = client.get("/webhooks/instagram", query_string={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "<script>alert(1)</script>"})
    assert response.mimetype == "text/plain" and response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_signed_delivery_is_stored_applied_and_answered_200(app, client, account):
    body = fixture("text")
    response = post(client, body)
    assert response.status_code == 200
    assert response.get_json()["status"] == "processed"
    with app.app_context():
        delivery = db.session.scalar(select(WebhookDelivery))
        assert bytes(delivery.body) == body  # the raw bytes, exactly as signed
        assert delivery.status == "processed" and delivery.signature == sign(body, APP_SECRET)
        assert delivery.event_count == 1 and delivery.results[0]["action"] == "created"
        assert db.session.scalar(select(Message.text)) == "Hi! Is the red dress still available?"


def test_the_signature_is_checked_over_the_raw_escaped_bytes(app, client, account):
    # Meta escapes non-ASCII and "/" before signing; re-serialising would change the bytes.
    body = encode(envelope(message("m-unicode", "äöå <b>/x</b>")))
    assert b"\\u00e4" in body and b"\\/" in body
    assert post(client, body).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Message.text)) == "äöå <b>/x</b>"


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha256=" + "0" * 64, "sha1=abc", "garbage"])
def test_missing_or_bad_signatures_get_403_store_nothing_and_log(app, client, caplog, header, account):
    body = fixture("text")
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    with caplog.at_level(logging.WARNING, logger="inbox"):
        response = client.post("/webhooks/instagram", data=body, headers=headers, csrf=False)
    assert response.status_code == 403
    assert count(app, WebhookDelivery) == 0 and count(app, Message) == 0
    assert any("webhook refused" in r.getMessage() and "signature" in r.getMessage() for r in caplog.records)


def test_a_body_signed_with_another_secret_or_changed_after_signing_is_refused(app, client, account):
    body = fixture("text")
    assert post(client, body, secret="someone-else").status_code == 403
    tampered = body.replace(b"red dress", b"RED DRESS")
    response = client.post("/webhooks/instagram", data=tampered, csrf=False,
                           headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert response.status_code == 403
    assert count(app, WebhookDelivery) == 0


def test_either_configured_app_secret_is_accepted(app_config, factory):
    app_config["META_INSTAGRAM_APP_SECRET"] = "instagram-app-secret"
    app = create_app(app_config)
    client = app.test_client()
    body = fixture("text")
    for secret in (APP_SECRET, "instagram-app-secret"):
        response = client.post("/webhooks/instagram", data=body, headers={"X-Hub-Signature-256": sign(body, secret)})
        assert response.status_code == 200, secret
    assert client.post("/webhooks/instagram", data=body,
                       headers={"X-Hub-Signature-256": sign(body, "neither")}).status_code == 403


def test_a_full_batch_of_long_emoji_texts_fits_the_limit_and_is_applied(app, client, account):
    # Meta's maxima: 1,000 events, texts of 1,000 UTF-8 bytes, non-ASCII escaped as \\uXXXX
    # (an emoji is a surrogate pair: 12 bytes for 4). The old 1 MiB limit answered 413.
    text = "\U0001F600" * 250  # 1,000 UTF-8 bytes
    payload = envelope(*(message(f"m-emoji-{i}", text, customer=f"{9000 + i % 50}", ts=T0 + i) for i in range(1000)))
    body = json.dumps(payload, ensure_ascii=True).encode()
    assert len(body) > 3_000_000
    response = post(client, body)
    assert response.status_code == 200
    assert response.get_json()["status"] == "processed"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1000
        assert db.session.scalar(select(Message.text).limit(1)) == text


def test_a_signed_body_over_the_limit_is_stored_as_failed_and_can_be_replayed(app_config, account):
    app_config["WEBHOOK_MAX_BYTES"] = 2_000
    app = create_app(app_config)
    client = app.test_client()
    body = encode(envelope(*(message(f"m-big-{i}", "x" * 100, ts=T0 + i) for i in range(20))))
    assert len(body) > 2_000
    response = client.post("/webhooks/instagram", data=body, headers={"X-Hub-Signature-256": sign(body, APP_SECRET)})
    assert response.status_code == 200  # kept: Meta must not retry it for 36 hours
    assert response.get_json()["status"] == "failed"
    with app.app_context():
        delivery = db.session.scalar(select(WebhookDelivery))
        assert (delivery.status, bytes(delivery.body)) == ("failed", body)
        assert "over the 2000-byte limit" in delivery.error
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0
        # The automatic recovery leaves it to a person; a replay applies it.
        assert recover_deliveries().replayed == 0
        # Nor is it work the inbox owes: /healthz stays ok while it waits on the deliveries page.
        assert obligations.oldest()["delivery"].count == 0
        assert replay_delivery(delivery.id).status == "processed"
        assert db.session.scalar(select(func.count()).select_from(Message)) == 20


def test_an_unsigned_body_over_the_limit_is_refused_and_not_stored(app, app_config):
    app_config["WEBHOOK_MAX_BYTES"] = 2_000
    app = create_app(app_config)
    body = b'{"object":"instagram","entry":[],"pad":"' + b"x" * 5_000 + b'"}'
    response = app.test_client().post("/webhooks/instagram", data=body,
                                      headers={"X-Hub-Signature-256": sign(body, "not-the-secret")})
    assert response.status_code == 403
    assert count(app, WebhookDelivery) == 0


def test_a_body_over_the_request_limit_gets_413_unread(app, client):
    body = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    assert post(client, body).status_code == 413
    assert count(app, WebhookDelivery) == 0


def test_webhooks_need_no_login_and_no_csrf_token(app, client, factory):
    factory.user()  # setup is done; other pages would ask for a login
    assert post(client, fixture("text")).status_code == 200


def test_a_signed_but_odd_payload_is_stored_marked_and_answered_200(app, client):
    for body in (b"not json at all", b"[]", b'{"object":"instagram","entry":"nope"}'):
        assert post(client, body).status_code == 200
    with app.app_context():
        statuses = list(db.session.scalars(select(WebhookDelivery.status).order_by(WebhookDelivery.id)))
        # A body that can never be applied is not "failed" (nobody can fix it): ignored, with the reason.
        assert statuses == ["ignored", "ignored", "ignored"]
        first, second = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id).limit(2))
        assert first.error.startswith("not JSON")
        assert second.error == "not a JSON object"
        assert first.results[0]["reason"].startswith("not JSON")


def test_a_database_outage_answers_5xx_so_meta_retries(app_config, tmp_path):
    # A database that cannot be reached: nothing can be stored, so the answer must not be 200.
    if is_postgres():
        app_config["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/unreachable"
        app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"connect_timeout": 2}}
    else:
        app_config["DATABASE_URL"] = f"sqlite:///{tmp_path}/missing-dir/inbox.sqlite3"
    app = create_app(app_config)
    response = post(app.test_client(), fixture("text"))
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_the_signature_is_stored_in_its_normal_form(app, client, account):
    body = fixture("text")
    signature = sign(body, APP_SECRET)
    response = client.post("/webhooks/instagram", data=body, csrf=False,
                           headers={"X-Hub-Signature-256": "sha256=" + signature[7:].upper() + "   "})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(WebhookDelivery.signature)) == signature
