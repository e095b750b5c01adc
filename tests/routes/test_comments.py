"""The comments view and its actions, the automations pages, and accounts kept apart."""

from __future__ import annotations

import time

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Automation, Comment, Message
from tests.support.webhooks import MEDIA, SECOND_ACCOUNT, changes, comment, post


def _ids(app, **where) -> dict[str, int]:
    with app.app_context():
        return {c.comment_id: c.id for c in db.session.scalars(select(Comment).filter_by(**where))}


def test_posts_with_the_newest_comments_come_first_with_product_and_unread_count(client, app, account, agent,
                                                                                 factory):
    product = factory.product(account, "Red Dress", "RD-1")
    red = factory.post(account, MEDIA, caption="Our red dress", is_own=True)
    factory.link(red, product)
    now = int(time.time())
    post(client, changes(comment("1791", "price?"), time_s=now - 60))
    post(client, changes(comment("1792", "<b>tote</b> size?", media="18000000000000002"), time_s=now))
    page = client.get(f"/accounts/{account.id}/comments/").get_data(as_text=True)
    assert page.index('id="comment-post-') < page.index("Our red dress")  # the tote's post comes first
    assert "Red Dress" in page and 'title="1 new"' in page

    r = client.get(f"/accounts/{account.id}/comments/posts/{red.id}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "price?" in html and "@anna.b" in html and "Reply privately" in html
    assert 'title="1 new"' in html  # the tote's comment is still new; the red dress's was just read
    tote = client.get(f"/accounts/{account.id}/comments/?product={product.id}").get_data(as_text=True)
    assert "Our red dress" in tote and "&lt;b&gt;tote" not in tote
    everything = client.get(f"/accounts/{account.id}/comments/").get_data(as_text=True)
    assert "<b>tote</b>" not in everything  # customer text is escaped wherever it shows


def test_actions_queue_the_work_and_say_what_is_on_its_way(client, app, account, agent):
    post(client, changes(comment("1791", "price?"), time_s=int(time.time())))
    cid = _ids(app)["1791"]
    base = f"/accounts/{account.id}/comments/{cid}"
    r = client.post(f"{base}/reply", data={"text": "@anna.b 89 EUR!"})
    assert r.status_code == 200 and "Sending to Instagram…" in r.get_data(as_text=True)
    r = client.post(f"{base}/hide")
    assert r.status_code == 200 and "Hiding…" in r.get_data(as_text=True)
    r = client.post(f"{base}/delete")
    assert r.status_code == 409 and "still on its way" in r.get_data(as_text=True)
    r = client.post(f"{base}/private-reply", data={"text": "Hi! 89 EUR.", "client_token": "t1"})
    assert r.status_code == 200 and "Replied privately" in r.get_data(as_text=True)
    r = client.post(f"{base}/private-reply", data={"text": "again", "client_token": "t2"})
    assert r.status_code == 409 and "one private reply per comment" in r.get_data(as_text=True)
    with app.app_context():
        sent = db.session.scalar(select(Message).where(Message.comment_id == cid))
        assert (sent.sender_kind, sent.status, sent.sent_by_user_id) == ("staff", "pending", agent.id)


def test_the_private_reply_button_says_why_not_after_seven_days(client, app, account, agent):
    post(client, changes(comment("1791", "old question"), time_s=int(time.time()) - 8 * 86400))
    cid = _ids(app)["1791"]
    with app.app_context():
        post_id = db.session.get(Comment, cid).post_id
    html = client.get(f"/accounts/{account.id}/comments/posts/{post_id}").get_data(as_text=True)
    assert "only within 7 days of the comment" in html
    r = client.post(f"/accounts/{account.id}/comments/{cid}/private-reply", data={"text": "hi", "client_token": "x"})
    assert r.status_code == 422 and "7 days" in r.get_data(as_text=True)


def test_another_accounts_comments_are_not_found(client, app, account, second_account, agent):
    post(client, changes(comment("1791", "theirs"), account=SECOND_ACCOUNT))
    cid = _ids(app)["1791"]
    for action in ("reply", "private-reply", "hide", "unhide", "delete"):
        r = client.post(f"/accounts/{account.id}/comments/{cid}/{action}", data={"text": "x", "client_token": "y"})
        assert r.status_code == 404, action
    assert client.get(f"/accounts/{second_account.id}/comments/").status_code == 404
    assert "theirs" not in client.get(f"/accounts/{account.id}/comments/").get_data(as_text=True)


def test_admins_add_and_pause_rules_agents_read_them(client, app, account, auth, factory):
    admin = factory.staff_on(account, "admin")
    auth.login(admin)
    post(client, changes(comment("1791", "PRECIO?"), time_s=int(time.time())))
    base = f"/accounts/{account.id}/automations/"
    form = {"name": "Price", "keywords": "precio", "scope": "all", "template": "Hi {first_name}!",
            "public_replies": "DM sent!\n"}
    dry = client.post(base, data={**form, "dry_run": "1"}).get_data(as_text=True)
    assert "1 recent comment would have matched" in dry and "PRECIO?" in dry
    assert client.post(base, data={**form, "template": "Hi {nme}"}).status_code == 422
    assert client.post(base, data=form).status_code == 303
    with app.app_context():
        rule_id = db.session.scalar(select(Automation.id))
    assert "Price" in client.get(base).get_data(as_text=True)
    r = client.post(f"{base}{rule_id}/pause")
    assert r.status_code == 200 and "Paused" in r.get_data(as_text=True)

    auth.logout()
    auth.login(factory.staff_on(account, "agent"))
    assert "Price" in client.get(base).get_data(as_text=True)
    assert client.post(f"{base}{rule_id}/resume").status_code == 403
    assert client.post(base, data=form).status_code == 403
