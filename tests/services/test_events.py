"""The webhook parser: pure, defensive, every shape of event Instagram's messaging webhooks send."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.services.events import (
    EditEvent, IgnoredEvent, InvalidBody, MessageEvent, PostbackEvent, ReactionEvent, ReferralEvent, SeenEvent,
    parse_delivery, read_time, referral_ad, referral_is_evidence,
)
from tests.support.webhooks import ACCOUNT, CUSTOMER, T0, encode, envelope, fixture, fixture_names, message

NOW = 1767300000000


def parse(payload) -> list:
    return list(parse_delivery(encode(payload), NOW).events)


def only(name: str):
    events = list(parse_delivery(fixture(name), NOW).events)
    assert len(events) == 1, events
    return events[0]


def test_every_fixture_parses_into_typed_events():
    assert len(fixture_names()) >= 30
    for name in fixture_names():
        events = parse_delivery(fixture(name), NOW).events
        assert events, name


def test_a_text_message_from_a_customer():
    event = only("text")
    assert isinstance(event, MessageEvent)
    assert (event.entry_id, event.sender_id, event.recipient_id) == (ACCOUNT, CUSTOMER, ACCOUNT)
    assert event.text == "Hi! Is the red dress still available?"
    assert event.timestamp == T0 and not event.is_echo and not event.attachments


@pytest.mark.parametrize("name, kind, url_part, media_id, title", [
    ("image", "image", "asset_id=", None, None),
    ("video", "video", "&v=1", None, None),
    ("audio", "audio", "&a=1", None, None),
    ("file", "file", "invoice.pdf", None, None),
    ("share", "share", "post.jpg", None, None),
    ("ig_post_id", "ig_post", "redress.jpg", "18000000000000001", "New in: the red linen dress RD-1 #summer"),
    ("ig_post_media_id", "ig_post", "bag.jpg", "18000000000000002", "Woven bag, back in stock"),
    ("ig_reel", "ig_reel", "reel.mp4", "18000000000000003", "How we dye the linen"),
    ("reel", "reel", "reel2.mp4", "18000000000000004", "Behind the scenes"),
    ("story_mention", "story_mention", "story=1", None, None),
    ("ig_story", "ig_story", "story.jpg", "18000000000000005", None),
    ("ephemeral", "ephemeral", None, None, None),
    ("template_product", "template", "rd1.jpg", None, "Red linen dress"),
    ("sticker", "sticker", "sticker=1", None, None),
    ("unknown_attachment", "unknown", "&h=1", None, None),
    ("attachments_as_object", "image", "&o=1", None, None),
])
def test_each_attachment_type_keeps_its_url_media_id_and_caption(name, kind, url_part, media_id, title):
    event = only(name)
    assert isinstance(event, MessageEvent) and len(event.attachments) == 1
    attachment = event.attachments[0]
    assert attachment.type == kind
    if url_part is None:
        assert attachment.source_url is None
    else:
        assert url_part in attachment.source_url
    assert attachment.media_id == media_id
    assert attachment.title == title


def test_unknown_attachment_types_are_kept_raw():
    attachment = only("unknown_attachment").attachments[0]
    assert attachment.raw == {"type": "hologram", "payload": {"url": attachment.source_url, "depth": 3}}


def test_flags_replies_quick_replies_and_referrals():
    assert only("unsupported").is_unsupported
    assert only("reply_to_message").reply_to_mid.endswith("text")
    story = only("reply_to_story")
    assert story.reply_to_story_id == "18000000000000006" and story.reply_to_story_url.endswith("story2.jpg")
    assert only("quick_reply").quick_reply_payload == "SIZE_M"
    ad = only("ad_referral").referral
    assert referral_ad(ad) == ("23850000000000001", "Spring sale: linen dresses") and referral_is_evidence(ad)
    product = only("product_referral").referral
    assert referral_ad(product) == (None, None) and referral_is_evidence(product)
    assert not referral_is_evidence({"ref": "just_a_link", "source": "SHORTLINK"})


def test_echoes_and_unsends():
    echo = only("echo_text")
    assert echo.is_echo and echo.sender_id == ACCOUNT and echo.recipient_id == CUSTOMER
    deleted = only("deleted")
    assert deleted.is_deleted and deleted.text is None and deleted.mid.endswith("text")
    assert only("deleted_echo").is_deleted and only("deleted_echo").is_echo
    assert only("self_message").is_self


def test_reactions_seen_edits_postbacks_and_referrals():
    react = only("reaction_react")
    assert isinstance(react, ReactionEvent) and (react.action, react.reaction, react.emoji) == ("react", "love", "\u2764\ufe0f")
    unreact = only("reaction_unreact")
    assert unreact.action == "unreact" and unreact.reaction is None and unreact.emoji is None
    seen = only("seen_mid")
    assert isinstance(seen, SeenEvent) and seen.mid.endswith("echo") and seen.watermark is None
    assert only("seen_watermark").watermark == T0 + 125000
    no_sender = only("read_no_sender")
    assert no_sender.sender_id is None and no_sender.recipient_id is None and no_sender.mid
    edit = only("edit")
    assert isinstance(edit, EditEvent) and edit.num_edit == 1 and edit.text.endswith("in M?")
    assert only("edit_no_sender").sender_id is None
    assert only("edit_num_edit_zero").num_edit == 0
    postback = only("postback")
    assert isinstance(postback, PostbackEvent) and (postback.title, postback.payload) == ("Track my order", "TRACK_ORDER")
    referral = only("messaging_referral")
    assert isinstance(referral, ReferralEvent) and referral.referral["ref"] == "summer_ad"


def test_standby_changes_handover_and_other_objects_are_kept_apart():
    standby = only("standby")
    assert isinstance(standby, MessageEvent) and standby.standby
    assert only("changes_comment").kind == "comment"
    assert only("handover").type == "handover"
    other = only("other_object")
    assert isinstance(other, IgnoredEvent) and "page" in other.reason


def test_a_batch_keeps_every_entry_and_its_account_in_order():
    events = parse_delivery(fixture("multi_entry_batch"), NOW).events
    assert [e.entry_id for e in events] == [ACCOUNT, "17841400000000002", ACCOUNT]
    assert [e.index for e in events] == [0, 1, 2]
    assert [e.text for e in events] == ["first shop", "second shop", "another customer"]


def test_numeric_ids_and_times_in_seconds_or_iso():
    event = only("numeric_ids_seconds")
    assert (event.entry_id, event.sender_id, event.timestamp) == (ACCOUNT, CUSTOMER, T0)
    assert only("iso_timestamp").timestamp == T0 + 5 * 60 * 1000


@pytest.mark.parametrize("value, expected", [
    (T0, T0), (T0 // 1000, T0), (str(T0), T0), (T0 * 1000, T0), ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T01:00:00+0100", T0), ("2026-01-01T00:00:00", T0), (None, None), ("soon", None), (True, None),
    (-5, None), (float("nan"), None), (10**30, None), ("", None),
])
def test_time_readings(value, expected):
    assert read_time(value) == expected


def test_an_event_without_a_time_gets_the_entry_time_or_the_arrival():
    item = message("m1")
    del item["timestamp"]
    assert parse(envelope(item))[0].timestamp == T0
    payload = envelope(item)
    del payload["entry"][0]["time"]
    assert parse(payload)[0].timestamp == NOW


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b'"text"', b"{\"a\": NaN}", b"\xff\xfe", b"[" * 100000])
def test_bodies_that_are_not_a_json_object_are_refused_clearly(body):
    with pytest.raises(InvalidBody):
        parse_delivery(body, NOW)


def test_broken_items_become_ignored_events_with_a_reason():
    payload = {"object": "instagram", "entry": [
        "nonsense",
        {"id": ACCOUNT, "messaging": [
            42,
            {"sender": {"id": CUSTOMER}, "message": "text"},
            {"sender": {"id": CUSTOMER}, "message": {"text": "no mid"}},
            {"sender": {"id": CUSTOMER}, "reaction": {"mid": "m", "action": "explode"}},
            {"sender": {"id": CUSTOMER}, "read": {}},
            {"sender": {"id": CUSTOMER}, "optin": {"ref": "x"}},
        ]},
    ]}
    events = parse(payload)
    assert all(isinstance(e, IgnoredEvent) for e in events)
    reasons = [e.reason for e in events]
    assert reasons == ["entry is not an object", "messaging item is not an object", "message is not an object",
                       "message without a usable mid", "unknown reaction action 'explode'",
                       "read without a mid or a watermark", "unknown messaging event (optin)"]


def test_strings_that_databases_refuse_are_repaired():
    body = b'{"object":"instagram","entry":[{"id":"1784","messaging":[{"sender":{"id":"9"},"recipient":{"id":"1784"},' \
           b'"timestamp":1767225600000,"message":{"mid":"m1","text":"a\\u0000b \\ud83d end","attachments":' \
           b'[{"type":"image","payload":{"url":"https://x.example/\\u0000"}}]}}]}]}'
    event = parse_delivery(body, NOW).events[0]
    assert event.text == "ab \ufffd end"
    assert event.attachments[0].raw["payload"]["url"] == "https://x.example/"
    assert event.attachments[0].source_url == "https://x.example/"


def test_ids_too_long_or_of_the_wrong_type_are_not_ids():
    item = message("m" * 600)
    assert isinstance(parse(envelope(item))[0], IgnoredEvent)
    item = message("m1", customer="9" * 65)
    assert parse(envelope(item))[0].sender_id is None
    item = message("m1")
    item["sender"] = {"id": True}
    assert parse(envelope(item))[0].sender_id is None
    item["sender"] = {"id": 12345.0}
    assert parse(envelope(item))[0].sender_id == "12345"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["object", "entry", "id", "time", "messaging", "standby", "changes", "sender", "recipient",
                         "timestamp", "message", "mid", "text", "attachments", "type", "payload", "url", "is_echo",
                         "is_deleted", "reaction", "read", "message_edit", "num_edit", "postback", "referral",
                         "reply_to", "story", "quick_reply", "watermark", "action", "emoji"]) | st.text(max_size=5),
        children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_parser_never_raises_on_any_json(value):
    body = json.dumps(value).encode()
    try:
        parsed = parse_delivery(body, NOW)
    except InvalidBody:
        assert not isinstance(value, dict)
        return
    for event in parsed.events:
        assert event.timestamp > 0
