"""The inbox page over HTTP: list, thread, every attachment kind, escaping, read state, done/reopen."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import inbox_state
from tests.support.webhooks import ACCOUNT, CUSTOMER, T0, envelope, fixture, message, post

ATTACHMENT_FIXTURES = ["image", "video", "audio", "file", "share", "ig_post_media_id", "ig_reel", "reel",
                       "story_mention", "ig_story", "ephemeral", "fallback", "template_product", "sticker",
                       "unknown_attachment", "unsupported", "reply_to_story", "reply_to_message", "text",
                       "echo_text", "echo_image", "reaction_react", "edit", "quick_reply", "ad_referral"]


@pytest.fixture
def shop(factory):
    return factory.account(ig_user_id=ACCOUNT, username="shop")


@pytest.fixture
def staff(factory, shop, auth):
    user = factory.staff_on(shop, "agent")
    auth.login(user)
    return user


def _deliver(client, *names):
    for name in names:
        response = post(client, json.loads(fixture(name)))
        assert response.status_code == 200, name


def _conversation_id(app) -> int:
    return inbox_state.conversations(app)[0].id


def test_list_and_thread_show_every_attachment_kind(app, client, shop, staff):
    _deliver(client, *ATTACHMENT_FIXTURES)
    cid = _conversation_id(app)
    page = client.get(f"/accounts/{shop.id}/").get_data(as_text=True)
    assert f'id="conversation-{cid}"' in page
    html = client.get(f"/accounts/{shop.id}/c/{cid}").get_data(as_text=True)
    assert 'id="thread"' in html and 'id="messages"' in html
    for kind in ("image", "video", "audio", "file", "share", "ig_post", "ig_reel", "reel", "story_mention",
                 "ig_story", "ephemeral", "fallback", "template", "sticker", "unknown"):
        assert f"att att-{kind}" in html, kind
    assert "<video" in html and "<audio" in html
    assert "Replied to your story" in html
    assert "From the Instagram app" in html
    assert "Instagram did not pass this message on" in html
