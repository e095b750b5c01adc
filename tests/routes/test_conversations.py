"""The inbox page over HTTP: list, thread, every attachment kind, escaping, read state, done/reopen."""

from __future__ import annotations

import json
import time

from tests.support import stored
from tests.support.webhooks import ACCOUNT, T0, envelope, fixture, message, post

ATTACHMENT_FIXTURES = ["image", "video", "audio", "file", "share", "ig_post_media_id", "ig_reel", "reel",
                       "story_mention", "ig_story", "ephemeral", "fallback", "template_product", "sticker",
                       "unknown_attachment", "unsupported", "reply_to_story", "reply_to_message", "text",
                       "echo_text", "echo_image", "reaction_react", "edit", "quick_reply", "ad_referral"]


def _deliver(client, *names):
    for name in names:
        response = post(client, json.loads(fixture(name)))
        assert response.status_code == 200, name


def _conversation_id(app) -> int:
    return stored.conversations(app)[0].id


def test_list_and_thread_show_every_attachment_kind(app, client, account, agent):
    _deliver(client, *ATTACHMENT_FIXTURES)
    cid = _conversation_id(app)
    page = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    assert f'id="conversation-{cid}"' in page
    html = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
    assert 'id="thread"' in html and 'id="messages"' in html
    for kind in ("image", "video", "audio", "file", "share", "ig_post", "ig_reel", "reel", "story_mention",
                 "ig_story", "ephemeral", "fallback", "template", "sticker", "unknown"):
        assert f"att att-{kind}" in html, kind
    assert "<video" in html and "<audio" in html
    assert "Replied to your story" in html
    assert "From the Instagram app" in html
    assert "Instagram did not pass this message on" in html


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _assert_inert(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img src=x" not in html and 'onerror="alert' not in html
    assert "javascript:" not in html


def test_customer_strings_are_escaped_everywhere(app, client, factory, account, agent):
    customer = "9100000000000666"
    item = message("mid.hostile.1", HOSTILE, customer=customer, ts=T0,
                   attachments=[
                       {"type": "share", "payload": {"url": "javascript:alert(3)", "title": HOSTILE, "id": "1799"}},
                       {"type": "ig_post", "payload": {"url": "https://scontent.cdninstagram.com/p.jpg",
                                                       "title": HOSTILE, "ig_post_media_id": "1800"}},
                       {"type": "fallback", "payload": {"url": "javascript:alert(4)", "title": HOSTILE}},
                       {"type": "template", "payload": {"product": {"elements": [
                           {"title": HOSTILE, "subtitle": HOSTILE, "image_url": "javascript:alert(5)"}]}}},
                       {"type": "<b>new_kind</b>", "payload": {"html": HOSTILE}},
                   ],
                   quick_reply={"payload": HOSTILE})
    assert post(client, envelope(item)).status_code == 200
    assert post(client, envelope({"sender": {"id": customer}, "recipient": {"id": ACCOUNT}, "timestamp": T0 + 1,
                                  "reaction": {"mid": "mid.hostile.1", "action": "react", "reaction": HOSTILE,
                                               "emoji": HOSTILE}})).status_code == 200
    assert post(client, envelope(message("mid.hostile.2", "re", customer=customer, ts=T0 + 2,
                                         reply_to={"mid": "mid.hostile.1"}))).status_code == 200
    factory.identity(account, customer, username=HOSTILE, name=HOSTILE, profile_pic_url="javascript:alert(6)")
    cid = next(c.id for c in stored.conversations(app) if c.customer_igsid == customer)

    page = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    _assert_inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the name and the preview, as text
    thread = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
    _assert_inert(thread)
    assert thread.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    searched = client.get(f"/accounts/{account.id}/list?q={HOSTILE[:20]}", headers={"HX-Request": "true"})
    _assert_inert(searched.get_data(as_text=True))
    assert f'id="conversation-{cid}"' in searched.get_data(as_text=True)


def test_quoted_message_reactions_edits_and_unsent(app, client, account, agent):
    _deliver(client, "text", "echo_text", "reply_to_message", "reaction_react", "edit")
    cid = _conversation_id(app)
    rows = {m.mid: m for m in stored.messages(app)}
    html = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
    replied = next(m for m in rows.values() if m.reply_to_mid)
    quoted = rows[replied.reply_to_mid]
    bubble = html.split(f'id="message-{replied.id}"')[1].split('<div id="message-')[0]
    assert '<blockquote class="msg-quote">' in bubble and quoted.text[:20] in bubble
    assert 'class="msg-reactions"' in html
    assert "Edited" in html
    post(client, envelope(message(quoted.mid, None, ts=T0 + 50, is_deleted=True)))
    html = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
    unsent = html.split(f'id="message-{quoted.id}"')[1].split('<div id="message-')[0]
    assert "Unsent a message" in unsent and quoted.text not in unsent


def test_outgoing_status_and_failure_reason(app, client, account, agent):
    from sqlalchemy import update as sql_update

    from inbox.extensions import db
    from inbox.models import Message

    _deliver(client, "text", "echo_text")
    cid = _conversation_id(app)
    out = next(m for m in stored.messages(app) if m.direction == "out")
    for status, label in (("pending", "Sending…"), ("sent", "Sent"), ("seen", "Seen"), ("failed", "Not sent")):
        with app.app_context():
            db.session.execute(sql_update(Message).where(Message.id == out.id).values(
                status=status, error_message="This person is outside the 24-hour window." if status == "failed" else None))
            db.session.commit()
        html = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
        bubble = html.split(f'id="message-{out.id}"')[1]
        assert f"· {label}" in bubble, status
    assert "outside the 24-hour window" in bubble and 'role="alert"' in bubble


def test_story_cards_fall_back_when_the_story_cannot_be_shown(app, client, account, agent):
    elsewhere = "https://evil.example.com/story.jpg"
    item = message("mid.story.1", None, attachments=[{"type": "story_mention", "payload": {"url": elsewhere}}])
    reply = message("mid.story.2", "so pretty", ts=T0 + 1, reply_to={"story": {"id": "1790", "url": elsewhere}})
    for payload in (item, reply):
        assert post(client, envelope(payload)).status_code == 200
    # A story lives a day (media's rule), so the one on Instagram's host is from just now.
    allowed = message("mid.story.3", None, ts=int(time.time() * 1000), attachments=[
        {"type": "story_mention", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}}])
    assert post(client, envelope(allowed)).status_code == 200
    html = client.get(f"/accounts/{account.id}/c/{_conversation_id(app)}").get_data(as_text=True)
    assert "evil.example.com" not in html  # never loaded from a host that is not Instagram's
    assert html.count('<span class="att-gone">Story no longer available</span>') == 2
    assert 'src="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"' in html
    assert "Mentioned you in their story" in html and "Replied to your story" in html
