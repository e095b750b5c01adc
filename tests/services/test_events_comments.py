"""The `changes` style (comments, live comments, mentions): every payload variant parses into a typed event."""

from __future__ import annotations

from inbox.services.events import CommentEvent, IgnoredEvent, MentionEvent, MessageEvent, parse_delivery
from tests.support.webhooks import ACCOUNT, CUSTOMER, MEDIA, T0, changes, comment, encode, fixture, message

NOW = 1767300000000


def parse(payload) -> list:
    return list(parse_delivery(encode(payload), NOW).events)


def one(payload):
    events = parse(payload)
    assert len(events) == 1, events
    return events[0]


def test_business_login_comment_with_its_commenter_media_and_time_in_seconds():
    event = one(changes(comment("17900000000000009", "How much? 😍")))
    assert isinstance(event, CommentEvent)
    assert (event.comment_id, event.field, event.media_id, event.text) == ("17900000000000009", "comments", MEDIA,
                                                                           "How much? 😍")
    assert (event.sender_id, event.username, event.entry_id) == (CUSTOMER, "anna.b", ACCOUNT)
    assert (event.own, event.verb, event.parent_id, event.media_product_type) == (False, "add", None, "FEED")
    assert event.timestamp == T0  # entry.time is in seconds for changes; read as ms
    fixture_event = parse_delivery(fixture("changes_comment"), NOW).events[0]
    assert isinstance(fixture_event, CommentEvent) and fixture_event.comment_id == "17900000000000009"


def test_a_reply_keeps_its_parent_and_facebook_login_names_the_id_comment_id():
    reply = one(changes(comment("17900000000000010", "@anna.b yes!", parent="17900000000000009")))
    assert reply.parent_id == "17900000000000009"
    fb = one(changes({"field": "comments", "value": {"comment_id": 17900000000000011, "text": "Size M?",
                                                     "from": {"id": CUSTOMER, "username": "anna.b"},
                                                     "media": {"id": MEDIA}}}))
    assert isinstance(fb, CommentEvent) and fb.comment_id == "17900000000000011" and fb.text == "Size M?"


def test_the_business_own_comment_is_recognised_by_self_ig_scoped_id_or_its_own_id():
    assert one(changes(comment("17900000000000012", "Thanks!", own=True))).own is True
    by_id = one(changes(comment("17900000000000013", "DM sent", customer=ACCOUNT, username="shop")))
    assert by_id.own is True
    assert one(changes(comment("17900000000000014", "hi"))).own is False


def test_live_comments_ads_and_the_comment_time_when_given():
    live = one(changes(comment("17900000000000015", "🔥🔥", field="live_comments")))
    assert isinstance(live, CommentEvent) and live.field == "live_comments"
    ad = one(changes(comment("17900000000000016", "Price?",
                             media={"id": MEDIA, "media_product_type": "AD", "ad_id": "23850000000000001",
                                    "ad_title": "Summer sale", "original_media_id": "18000000000000002"})))
    assert (ad.media_id, ad.ad_id, ad.ad_title, ad.original_media_id) == (MEDIA, "23850000000000001", "Summer sale",
                                                                          "18000000000000002")
    timed = one(changes(comment("17900000000000017", "later", timestamp="2026-01-01T00:05:00+0000")))
    assert timed.timestamp == T0 + 300_000


def test_edits_deletions_and_hiding_read_from_a_verb_or_a_flag():
    assert one(changes(comment("1790", "new text", verb="edited"))).verb == "edit"
    assert one(changes(comment("1790", None, verb="remove"))).verb == "remove"
    assert one(changes(comment("1790", None, is_deleted=True))).verb == "remove"
    assert one(changes(comment("1790", None, verb="hide"))).verb == "hide"
    assert one(changes(comment("1790", None, hidden=True))).verb == "hide"
    odd = one(changes(comment("1790", "x", verb="teleport")))
    assert isinstance(odd, IgnoredEvent) and "verb" in odd.reason


def test_mentions_in_a_comment_or_a_caption():
    in_comment = one(changes({"field": "mentions", "value": {"media_id": "18000000000000003",
                                                             "comment_id": "17900000000000020"}}))
    assert isinstance(in_comment, MentionEvent)
    assert (in_comment.media_id, in_comment.comment_id, in_comment.kind) == ("18000000000000003",
                                                                              "17900000000000020", "mention")
    caption = one(changes({"field": "mentions", "value": {"media_id": "18000000000000004"}}))
    assert isinstance(caption, MentionEvent) and caption.comment_id is None
    empty = one(changes({"field": "mentions", "value": {}}))
    assert isinstance(empty, IgnoredEvent) and empty.type == "mention"


def test_broken_and_unknown_changes_are_ignored_with_a_reason():
    no_id = one(changes(comment(None, "x")))
    assert isinstance(no_id, IgnoredEvent) and no_id.type == "comment" and "comment id" in no_id.reason
    not_object = one(changes({"field": "comments", "value": "nope"}))
    assert isinstance(not_object, IgnoredEvent) and "not an object" in not_object.reason
    other = one(changes({"field": "story_insights", "value": {"media_id": "1"}}))
    assert isinstance(other, IgnoredEvent) and other.type == "change" and "story_insights" in other.reason
    assert isinstance(one(changes("junk")), IgnoredEvent)


def test_one_body_mixes_messaging_and_changes_and_keeps_their_order():
    payload = {"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": T0, "messaging": [message("m1", "hi")]},
        {"id": ACCOUNT, "time": T0 // 1000, "changes": [comment("1791", "price?"), comment("1792", "me too")]},
    ]}
    events = parse(payload)
    assert [type(e) for e in events] == [MessageEvent, CommentEvent, CommentEvent]
    assert [e.index for e in events] == [0, 1, 2]
