"""Meta's data-deletion and deauthorize callbacks: signed_request checked, the account's data deleted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account, Conversation, Erasure, Message
from inbox.services.meta_callbacks import BadSignedRequest, parse_signed_request
from tests.support.settings import APP_SECRET
from tests.support.webhooks import ACCOUNT, SECOND_ACCOUNT, envelope, message, post


def signed_request(user_id: str, *, secret: str = APP_SECRET, issued_at: int | None = None,
                   algorithm: str = "HMAC-SHA256") -> str:
    """What Meta posts: base64url(HMAC-SHA256(payload)) "." base64url(payload), no padding."""
    payload = {"algorithm": algorithm, "issued_at": int(time.time()) if issued_at is None else issued_at,
               "user_id": user_id}
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    signature = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode() + "." + encoded


def test_a_good_signed_request_is_read():
    parsed = parse_signed_request(signed_request("123"), [APP_SECRET], max_age=60)
    assert parsed.user_id == "123"


@pytest.mark.parametrize("raw", [
    signed_request("123", secret="another-secret"),  # bad signature
    signed_request("123", issued_at=int(time.time()) - 3 * 24 * 3600),  # expired
    signed_request("123", issued_at=int(time.time()) + 3600),  # from the future
    signed_request("123", algorithm="none"),
    "", "abc", "a.b.c", "!!!.???",
])
def test_bad_signed_requests_are_refused(raw):
    with pytest.raises(BadSignedRequest):
        parse_signed_request(raw, [APP_SECRET], max_age=24 * 3600)


@pytest.fixture
def shop_with_history(client, account, second_account, factory):
    """The shop (known by its app-scoped id) with a conversation, and another shop sharing deliveries."""
    with client.application.app_context():
        db.session.get(Account, account.id).app_user_id = "app-scoped-42"
        db.session.commit()
    both = envelope(message("m-own-1", "A question for the shop", customer="5501"))
    both["entry"].append(envelope(message("m-other-1", "For the other shop", customer="5502",
                                          account=SECOND_ACCOUNT), account=SECOND_ACCOUNT)["entry"][0])
    assert post(client, both).status_code == 200
    factory.staff_on(account, "admin")
    return account


def test_data_deletion_answers_with_a_status_url_and_code_then_deletes_the_account(
        app, client, shop_with_history, second_account, run_jobs):
    answer = client.post("/meta/data-deletion", data={"signed_request": signed_request("app-scoped-42")})
    assert answer.status_code == 200
    body = answer.get_json()
    code = body["confirmation_code"]
    assert code and body["url"].endswith(f"/meta/data-deletion/{code}")
    status = client.get(f"/meta/data-deletion/{code}")
    assert status.status_code == 200 and "In progress" in status.text

    run_jobs()  # the erasure runs in the worker
    assert "Done." in client.get(f"/meta/data-deletion/{code}").text
    with app.app_context():
        assert db.session.scalar(select(Account).where(Account.ig_user_id == ACCOUNT)) is None
        texts = set(db.session.scalars(select(Message.text)))
        assert texts == {"For the other shop"}  # the other shop keeps its data
        bodies = [bytes(b) for b in db.session.scalars(select(db.metadata.tables["webhook_deliveries"].c.body))]
        assert bodies and all(ACCOUNT.encode() not in b and b"A question" not in b for b in bodies)
        audit = db.session.scalar(select(Erasure))
        assert (audit.kind, audit.status, audit.requested_by, audit.account_id) == ("account", "done", "meta", None)


def test_data_deletion_for_someone_we_do_not_know_says_nothing_is_held(client, account):
    answer = client.post("/meta/data-deletion", data={"signed_request": signed_request("nobody-we-know")})
    assert answer.status_code == 200
    page = client.get(f"/meta/data-deletion/{answer.get_json()['confirmation_code']}")
    assert "Nothing to delete" in page.text


@pytest.mark.parametrize("path", ["/meta/data-deletion", "/meta/deauthorize"])
@pytest.mark.parametrize("raw", ["", "x.y", "bad-secret", "expired"])
def test_callbacks_refuse_bad_or_expired_signatures(app, client, account, path, raw):
    raw = {"bad-secret": signed_request(ACCOUNT, secret="nope"),
           "expired": signed_request(ACCOUNT, issued_at=int(time.time()) - 3 * 24 * 3600)}.get(raw, raw)
    assert client.post(path, data={"signed_request": raw}).status_code == 400
    with app.app_context():
        row = db.session.get(Account, account.id)
        assert row.status == "active" and row.access_token_encrypted
        assert db.session.scalar(select(Erasure)) is None


def test_an_unknown_status_code_is_not_found(client):
    assert client.get("/meta/data-deletion/nope").status_code == 404


def test_deauthorize_disconnects_the_account_and_drops_its_token(app, client, account, factory, auth):
    answer = client.post("/meta/deauthorize", data={"signed_request": signed_request(ACCOUNT)})
    assert answer.status_code == 200
    with app.app_context():
        row = db.session.get(Account, account.id)
        assert row.status == "disconnected" and row.access_token_encrypted is None
    # Staff see why, and the composer says replies wait for a new connection.
    conversation = factory.conversation(account, "5503", messages=["still here?"])
    auth.login(factory.staff_on(account, "agent"))
    page = client.get(f"/accounts/{account.id}/c/{conversation.id}")
    assert "Disconnected." in page.text and "connects it again" in page.text
    with app.app_context():
        assert db.session.get(Conversation, conversation.id) is not None  # nothing deleted
