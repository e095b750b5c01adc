"""One loader per object: under one's own account, another account's conversation, message,
product, post or run is a 404 like a missing one, and nothing of it changes or shows."""

from __future__ import annotations

import io
import uuid

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation, Message
from inbox.services import jobruns
from inbox.services.products import catalogue, posts

SECRET = "their private words"


def test_another_accounts_ids_are_404_under_ones_own_account(app, client, auth, factory):
    mine = factory.account(username="mine")
    theirs = factory.account(username="theirs")
    auth.login(factory.staff_on(mine, "admin"))
    factory.conversation(mine, "111", messages=[{"mid": "m.mine", "text": "hello", "ts": 1_700_000_000_000}])
    cid = factory.conversation(theirs, "555", messages=[{"mid": "m.theirs", "text": SECRET, "ts": 1_700_000_000_000}]).id
    with app.app_context():
        mid = db.session.scalar(select(Message.id).where(Message.conversation_id == cid))
        product = catalogue.create_product(theirs.id, name="Their scarf", sku="TS-1")
        post = posts.ensure_post(theirs.id, "media-theirs", caption=SECRET)
        db.session.commit()
        run, _ = jobruns.start_or_get_running("refresh_identities", theirs.id, "unused", enqueue_job=False)
        ids = {"product": product.id, "post": post.id, "run": run.id}

    form = {"text": "hi", "client_token": uuid.uuid4().hex, "product_id": str(ids["product"])}
    for method, path in [
        ("GET", f"/c/{cid}"), ("GET", f"/c/{cid}/earlier"), ("GET", f"/c/{cid}/row"),
        ("POST", f"/c/{cid}/done"), ("POST", f"/conversations/{cid}/reply"),
        ("POST", f"/conversations/{cid}/read"), ("POST", f"/messages/{mid}/retry"),
        ("GET", f"/conversations/{cid}/product"), ("POST", f"/conversations/{cid}/product"),
        ("GET", f"/products/{ids['product']}/edit"), ("POST", f"/posts/{ids['post']}/link"),
        ("GET", f"/runs/{ids['run']}"),
    ]:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.open(f"/accounts/{mine.id}{path}", method=method, data=form, headers=headers)
            assert response.status_code == 404, f"{method} {path} answered {response.status_code}"
            assert SECRET not in response.get_data(as_text=True)
    upload = client.post(f"/accounts/{mine.id}/conversations/{cid}/attachments",
                         data={"files": (io.BytesIO(b"\x89PNG\r\n\x1a\n"), "a.png")}, content_type="multipart/form-data")
    assert upload.status_code == 404

    with app.app_context():
        theirs_now = db.session.get(Conversation, cid)
        assert theirs_now.status == "open" and theirs_now.product_id is None
        assert db.session.scalar(select(Message).where(Message.direction == "out")) is None
