"""Parse a webhook body into typed events: pure functions, no database, no network.

Meta's payloads vary between API flavours and versions, and differ in places from what
Meta documents (https://developers.facebook.com/docs/instagram-platform/webhooks/examples),
so every reader here is defensive: ids may be numbers
or strings, times may be ms, s or ISO strings, `attachments` may be one object instead of
a list. Anything we cannot use becomes an IgnoredEvent with a reason, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

# Attachment types we store under their own name; anything else is kept raw as "unknown".
KNOWN_ATTACHMENT_TYPES = frozenset({
    "image", "video", "audio", "file", "ig_post", "share", "ig_reel", "reel", "story_mention",
    "ig_story", "ephemeral", "fallback", "template", "sticker",
})
# Attachments that point at an Instagram post or reel: evidence of what a customer is asking about.
POST_ATTACHMENT_TYPES = frozenset({"ig_post", "share", "ig_reel", "reel"})

MAX_ID_LENGTH = 64  # identities, accounts and media ids are String(64)
MAX_MID_LENGTH = 512
MAX_SHORT_TEXT = 32  # reaction names and emoji
# Times outside this range are nonsense (or another unit) and fall back to the entry's time.
_MIN_MS = 946684800000  # 2000-01-01
_MAX_MS = 253402300799999  # 9999-12-31
# An event's time later than its arrival by more than this (clocks differ a little) is
# impossible: it would pin a conversation to the top of the list for ever. It becomes the
# arrival time, and the event's result says so.
MAX_FUTURE_MS = 60 * 60 * 1000
_NEGATIVE_NUMBER = re.compile(r"-\d+\Z")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_NO_SPACE = re.compile(r"\S+\Z")


class InvalidBody(ValueError):
    """The body is not a JSON object we can read."""


# --- Events --------------------------------------------------------------------------

@dataclass(frozen=True)
class AttachmentData:
    """One attachment as Meta sent it, with the fields we index pulled out."""

    type: str  # one of KNOWN_ATTACHMENT_TYPES, or "unknown"
    raw: dict[str, Any]
    source_url: str | None = None
    media_id: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Event:
    """Fields every event has: where it sits in the delivery and who took part."""

    index: int  # position in the delivery, for per-event results
    entry_id: str | None  # entry.id: the professional account
    sender_id: str | None
    recipient_id: str | None
    timestamp: int  # ms since the epoch
    standby: bool = field(default=False, kw_only=True)  # came in entry.standby[] (another app owns the thread)
    # What parsing had to change or refuse (an impossible time clamped, an id that is not
    # one): kept in the delivery's results, so the delivery says it was adjusted.
    note: str | None = field(default=None, kw_only=True)

    kind = "event"


@dataclass(frozen=True)
class MessageEvent(Event):
    """A message (`messages` field), an echo of one, or its unsend."""

    mid: str
    text: str | None = None
    attachments: tuple[AttachmentData, ...] = ()
    is_echo: bool = False
    is_self: bool = False
    is_deleted: bool = False
    is_unsupported: bool = False
    reply_to_mid: str | None = None
    reply_to_story_id: str | None = None
    reply_to_story_url: str | None = None
    quick_reply_payload: str | None = None
    postback_payload: str | None = None
    referral: dict[str, Any] | None = None
    # A message_edit with num_edit 0 for a mid we do not have is a new message (seen in development mode).
    from_edit: bool = False

    kind = "message"


@dataclass(frozen=True)
class ReactionEvent(Event):
    mid: str
    action: str  # "react" or "unreact"
    reaction: str | None = None
    emoji: str | None = None

    kind = "reaction"


@dataclass(frozen=True)
class SeenEvent(Event):
    """The customer saw a message (read.mid), or everything up to a watermark (ms)."""

    mid: str | None = None
    watermark: int | None = None

    kind = "seen"


@dataclass(frozen=True)
class EditEvent(Event):
    mid: str
    text: str | None = None
    num_edit: int | None = None
    attachments: tuple[AttachmentData, ...] = ()

    kind = "edit"


@dataclass(frozen=True)
class PostbackEvent(Event):
    """A tapped button or icebreaker: stored as an incoming message with its title as text."""

    mid: str
    title: str | None = None
    payload: str | None = None
    referral: dict[str, Any] | None = None  # an ad or ig.me link the button came from

    kind = "postback"


@dataclass(frozen=True)
class ReferralEvent(Event):
    """An ig.me link or ad click into an existing conversation, without a message."""

    referral: dict[str, Any] = field(default_factory=dict)

    kind = "referral"


COMMENT_FIELDS = ("comments", "live_comments")
# What a `verb` (or a deletion flag) in a comment change means. Meta documents no edit or
# deletion shape for Instagram comments; Page feed changes carry `verb` ("add", "edited",
# "remove", "hide", "unhide"), so a comment change that carries one is read the same way.
COMMENT_VERBS = {"add": "add", "added": "add", "edit": "edit", "edited": "edit", "update": "edit",
                 "remove": "remove", "removed": "remove", "delete": "remove", "deleted": "remove",
                 "hide": "hide", "hidden": "hide", "unhide": "unhide"}


@dataclass(frozen=True)
class CommentEvent(Event):
    """A comment on the account's media (`comments`, `live_comments`), or a change to one.

    `sender_id` is the commenter (`from.id`); `own` is true when the business wrote it
    (`from.self_ig_scoped_id`, or `from.id` is the account). `verb` is "add" unless the
    change said otherwise (see COMMENT_VERBS). Times are in seconds in these payloads.
    """

    comment_id: str
    field: str = "comments"
    media_id: str | None = None
    text: str | None = None
    parent_id: str | None = None
    username: str | None = None
    own: bool = False
    verb: str = "add"
    media_product_type: str | None = None
    ad_id: str | None = None
    ad_title: str | None = None
    original_media_id: str | None = None

    kind = "comment"


@dataclass(frozen=True)
class MentionEvent(Event):
    """Facebook Login's `mentions`: the account was @mentioned in a comment or a caption (ids only)."""

    media_id: str | None = None
    comment_id: str | None = None

    kind = "mention"


@dataclass(frozen=True)
class IgnoredEvent(Event):
    """Something stored with the delivery but not applied (handover, unknown changes, broken items)."""

    type: str = "unknown"
    reason: str = ""

    kind = "ignored"


@dataclass(frozen=True)
class ParsedDelivery:
    object: str | None
    events: tuple[Event, ...]


# --- Value readers -----------------------------------------------------------------

def clean_text(value: Any) -> str | None:
    """A string without NUL characters (PostgreSQL refuses them), or None."""
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "") if "\x00" in value else value


def read_id(value: Any, max_length: int = MAX_ID_LENGTH) -> str | None:
    """An Instagram id given as a string or a number; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        value = str(int(value))
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_length or not _NO_SPACE.match(value) or "\x00" in value:
        return None
    if _NEGATIVE_NUMBER.match(value):  # Instagram ids are positive numbers
        return None
    return value


def read_mid(value: Any) -> str | None:
    return read_id(value, MAX_MID_LENGTH)


def read_party(value: Any) -> str | None:
    """sender/recipient: {"id": ...}, or (seen in the wild) the bare id."""
    if isinstance(value, dict):
        return read_id(value.get("id"))
    return read_id(value)


def read_time(value: Any) -> int | None:
    """A time in ms from ms, seconds, µs or an ISO-8601 string; None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    number: float | None = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{1,20}(\.\d+)?", text):
            number = float(text)
        else:
            return _read_iso(text)
    if number is None or number != number or number <= 0:
        return None
    if number < 1e11:  # seconds (1e11 s is the year 5138)
        number *= 1000
    elif number >= 1e14:  # microseconds
        number /= 1000
    ms = int(number)
    return ms if _MIN_MS <= ms <= _MAX_MS else None


def _read_iso(text: str) -> int | None:
    if not text or len(text) > 64:
        return None
    candidate = text.replace("Z", "+00:00").replace("z", "+00:00")
    # "+0000" (Graph API style) -> "+00:00"
    candidate = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", candidate)
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        ms = int(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return None
    return ms if _MIN_MS <= ms <= _MAX_MS else None


def read_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 1
    return value is True


def read_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 2**31 else None
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 2**31 else None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        return int(value.strip())
    return None


def read_short(value: Any, limit: int = MAX_SHORT_TEXT) -> str | None:
    text = clean_text(value)
    if text is None and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    return text[:limit] if text else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    """A list, a single object as a one-item list, anything else as empty."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


# --- Attachments -------------------------------------------------------------------

def read_attachments(value: Any) -> tuple[AttachmentData, ...]:
    """Every usable attachment; unknown types are kept raw as "unknown"."""
    out = []
    for item in _as_list(value):
        if not isinstance(item, dict):
            continue
        out.append(read_attachment(item))
    return tuple(out)


def read_attachment(item: dict[str, Any]) -> AttachmentData:
    given = item.get("type")
    kind = given.strip().lower() if isinstance(given, str) else ""
    if kind not in KNOWN_ATTACHMENT_TYPES:
        kind = "unknown"
    payload = _as_dict(item.get("payload"))
    url = _read_url(payload.get("url"))
    media_id = None
    if kind == "ig_post":
        # Messenger documents `id`; Instagram traffic shows `ig_post_media_id`.
        media_id = read_id(payload.get("ig_post_media_id")) or read_id(payload.get("id"))
    elif kind in ("ig_reel", "reel"):
        media_id = read_id(payload.get("reel_video_id")) or read_id(payload.get("id"))
    elif kind == "ig_story":
        media_id = read_id(payload.get("story_media_id")) or read_id(payload.get("id"))
        url = url or _read_url(payload.get("story_media_url"))
    elif kind == "share":
        media_id = read_id(payload.get("id"))
    title = clean_text(payload.get("title"))
    if kind == "template":
        elements = _as_list(_as_dict(payload.get("product")).get("elements"))
        first = elements[0] if elements and isinstance(elements[0], dict) else {}
        title = title or clean_text(first.get("title"))
        url = url or _read_url(first.get("image_url"))
    return AttachmentData(type=kind, raw=item, source_url=url, media_id=media_id, title=title)


def _read_url(value: Any) -> str | None:
    text = clean_text(value)
    if not text:
        return None
    text = text.strip()
    return text if len(text) <= 8192 else None


# --- Envelope ----------------------------------------------------------------------

def decode_body(body: bytes) -> Any:
    """JSON as Meta sends it; NaN/Infinity, bad UTF-8 and lone surrogates are refused or repaired."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except InvalidBody:
        raise
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidBody(f"not JSON: {str(exc)[:200]}") from None
    if _SURROGATE_ESCAPE.search(body):
        data = _repair_surrogates(data)
    if b"\\u0000" in body:
        data = strip_nul(data)  # PostgreSQL stores no NUL in text or JSONB
    return data


def _refuse_constant(name: str):
    raise InvalidBody(f"not JSON: {name} is not a JSON number")


def _repair_surrogates(value: Any) -> Any:
    """Lone UTF-16 surrogates cannot be stored as UTF-8; replace them."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_repair_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_repair_surrogates(k): _repair_surrogates(v) for k, v in value.items()}
    return value


def strip_nul(value: Any) -> Any:
    """A copy of a JSON value without NUL characters in strings (for JSON columns)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    return value


def parse_delivery(body: bytes, received_ms: int) -> ParsedDelivery:
    """Every event of a delivery, in order. Raises InvalidBody when it is not a JSON object.

    received_ms is the fallback time for events that carry none we can read.
    """
    data = decode_body(body)
    if not isinstance(data, dict):
        raise InvalidBody("not a JSON object")
    obj = data.get("object")
    obj = obj if isinstance(obj, str) else None
    events: list[Event] = []
    entries = _as_list(data.get("entry"))
    if obj is not None and obj.lower() != "instagram":
        events.append(IgnoredEvent(0, None, None, None, received_ms, type="object",
                                   reason=f"object {obj[:40]!r} is not instagram"))
        return ParsedDelivery(obj, tuple(events))
    for entry in entries:
        if not isinstance(entry, dict):
            events.append(IgnoredEvent(len(events), None, None, None, received_ms, type="entry",
                                       reason="entry is not an object"))
            continue
        entry_id = read_id(entry.get("id"))
        entry_ms, _ = clamp_time(read_time(entry.get("time")) or received_ms, received_ms)
        for key, standby in (("messaging", False), ("standby", True)):
            for item in _as_list(entry.get(key)):
                events.append(parse_messaging(item, len(events), entry_id, entry_ms, standby=standby,
                                              received_ms=received_ms))
        for change in _as_list(entry.get("changes")):
            events.append(parse_change(change, len(events), entry_id, entry_ms))
    return ParsedDelivery(obj, tuple(events))


def clamp_time(ms: int, received_ms: int | None) -> tuple[int, str | None]:
    """ms, or the arrival time when ms is impossibly far in the future; and what was done."""
    if received_ms is not None and ms > received_ms + MAX_FUTURE_MS:
        return received_ms, f"timestamp {ms} is in the future; the arrival time is used"
    return ms, None


def parse_messaging(item: Any, index: int, entry_id: str | None, entry_ms: int, *, standby: bool = False,
                    received_ms: int | None = None) -> Event:
    """One item of entry.messaging[] (or standby[]) as a typed event."""
    if not isinstance(item, dict):
        return IgnoredEvent(index, entry_id, None, None, entry_ms, type="invalid", reason="messaging item is not an object",
                            standby=standby)
    sender = read_party(item.get("sender"))
    recipient = read_party(item.get("recipient"))
    notes = [f"{side} id {_shown(item.get(side))} is not an Instagram id; refused"
             for side, value in (("sender", sender), ("recipient", recipient))
             if value is None and item.get(side) not in (None, {}, "")]
    ts, clamped = clamp_time(read_time(item.get("timestamp")) or entry_ms, received_ms)
    if clamped:
        notes.append(clamped)
    base = dict(index=index, entry_id=entry_id, sender_id=sender, recipient_id=recipient, timestamp=ts, standby=standby,
                note="; ".join(notes) or None)

    if "message" in item:
        event = _parse_message(item.get("message"), base)
        # Click-to-message ads put the referral beside `message`, not inside it: read it there too.
        outer = item.get("referral")
        if isinstance(event, MessageEvent) and event.referral is None and isinstance(outer, dict) and outer:
            event = replace(event, referral=strip_nul(outer))
        return event
    if "message_edit" in item:
        return _parse_edit(item.get("message_edit"), base)
    if "reaction" in item:
        return _parse_reaction(item.get("reaction"), base)
    if "read" in item:
        return _parse_read(item.get("read"), base)
    if "postback" in item:
        event = _parse_postback(item.get("postback"), base)
        outer = item.get("referral")
        if isinstance(event, PostbackEvent) and event.referral is None and isinstance(outer, dict) and outer:
            event = replace(event, referral=strip_nul(outer))
        return event
    if "referral" in item:
        referral = item.get("referral")
        if not isinstance(referral, dict):
            return IgnoredEvent(**base, type="referral", reason="referral is not an object")
        return ReferralEvent(**base, referral=strip_nul(referral))
    for key in ("pass_thread_control", "take_thread_control", "request_thread_control", "app_roles"):
        if key in item:
            return IgnoredEvent(**base, type="handover", reason=f"{key}: handover is not used by the inbox")
    known = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
    label = ",".join(known)[:60] or "nothing"
    return IgnoredEvent(**base, type="unknown", reason=f"unknown messaging event ({label})")


def parse_change(change: Any, index: int, entry_id: str | None, entry_ms: int) -> Event:
    """One item of entry.changes[]: a comment, a live comment, a mention, or something ignored."""
    base = dict(index=index, entry_id=entry_id, sender_id=None, recipient_id=None, timestamp=entry_ms)
    if not isinstance(change, dict):
        return IgnoredEvent(**base, type="change", reason="change is not an object")
    field_name = change.get("field")
    label = field_name.strip().lower()[:40] if isinstance(field_name, str) else "unknown"
    value = change.get("value")
    if label in COMMENT_FIELDS:
        return _parse_comment(value, label, base)
    if label == "mentions":
        return _parse_mention(value, base)
    return IgnoredEvent(**base, type="change", reason=f"{label} changes are not handled by the inbox")


def _parse_comment(value: Any, field_name: str, base: dict[str, Any]) -> Event:
    if not isinstance(value, dict):
        return IgnoredEvent(**base, type="comment", reason=f"{field_name} value is not an object")
    # Business Login names the comment `id`; Facebook Login's sample calls it `comment_id`.
    comment_id = read_id(value.get("id")) or read_id(value.get("comment_id"))
    if comment_id is None:
        return IgnoredEvent(**base, type="comment", reason=f"{field_name} change without a usable comment id")
    author = value.get("from")
    author = author if isinstance(author, dict) else {}
    sender = read_id(author.get("id"))
    media = _as_dict(value.get("media"))
    media_id = read_id(media.get("id")) or read_id(value.get("media_id"))
    verb = COMMENT_VERBS.get(value.get("verb").strip().lower() if isinstance(value.get("verb"), str) else "add")
    if verb is None:
        return IgnoredEvent(**base, type="comment", reason=f"unknown comment verb {str(value.get('verb'))[:20]!r}")
    if read_bool(value.get("is_deleted")) or read_bool(value.get("deleted")):
        verb = "remove"
    elif "hidden" in value and verb == "add" and isinstance(value.get("hidden"), bool):
        verb = "hide" if value["hidden"] else verb
    own = (read_id(author.get("self_ig_scoped_id")) is not None
           or (sender is not None and sender == base["entry_id"]))
    when = read_time(value.get("timestamp")) or read_time(value.get("created_time")) or base["timestamp"]
    when, clamped = clamp_time(when, base["timestamp"])  # never later than the (clamped) entry time allows
    if clamped:
        base = {**base, "note": clamped}
    username = read_short(author.get("username"), 255) or read_short(value.get("username"), 255)
    ad_title = clean_text(media.get("ad_title"))
    return CommentEvent(
        **{**base, "sender_id": sender, "timestamp": when},
        comment_id=comment_id, field=field_name, media_id=media_id, text=clean_text(value.get("text")),
        parent_id=read_id(value.get("parent_id")), username=username, own=own, verb=verb,
        media_product_type=read_short(media.get("media_product_type"), 32),
        ad_id=read_id(media.get("ad_id")), ad_title=ad_title[:2000] if ad_title else None,
        original_media_id=read_id(media.get("original_media_id")),
    )


def _parse_mention(value: Any, base: dict[str, Any]) -> Event:
    if not isinstance(value, dict):
        return IgnoredEvent(**base, type="mention", reason="mentions value is not an object")
    media_id = read_id(value.get("media_id"))
    comment_id = read_id(value.get("comment_id"))
    if media_id is None and comment_id is None:
        return IgnoredEvent(**base, type="mention", reason="mention without a media or comment id")
    return MentionEvent(**base, media_id=media_id, comment_id=comment_id)


def _parse_message(message: Any, base: dict[str, Any]) -> Event:
    if not isinstance(message, dict):
        return IgnoredEvent(**base, type="message", reason="message is not an object")
    mid = read_mid(message.get("mid"))
    if mid is None:
        return IgnoredEvent(**base, type="message", reason="message without a usable mid")
    reply_to = _as_dict(message.get("reply_to"))
    story = _as_dict(reply_to.get("story"))
    quick_reply = _as_dict(message.get("quick_reply"))
    referral = message.get("referral")
    return MessageEvent(
        **base,
        mid=mid,
        text=clean_text(message.get("text")),
        attachments=read_attachments(message.get("attachments", message.get("attachment"))),
        is_echo=read_bool(message.get("is_echo")),
        is_self=read_bool(message.get("is_self")),
        is_deleted=read_bool(message.get("is_deleted")),
        is_unsupported=read_bool(message.get("is_unsupported")),
        reply_to_mid=read_mid(reply_to.get("mid")),
        reply_to_story_id=read_id(story.get("id")),
        reply_to_story_url=_read_url(story.get("url")),
        quick_reply_payload=clean_text(quick_reply.get("payload")),
        referral=strip_nul(referral) if isinstance(referral, dict) and referral else None,
    )


def _parse_edit(edit: Any, base: dict[str, Any]) -> Event:
    if not isinstance(edit, dict):
        return IgnoredEvent(**base, type="edit", reason="message_edit is not an object")
    mid = read_mid(edit.get("mid"))
    if mid is None:
        return IgnoredEvent(**base, type="edit", reason="message_edit without a usable mid")
    return EditEvent(**base, mid=mid, text=clean_text(edit.get("text")), num_edit=read_int(edit.get("num_edit")),
                     attachments=read_attachments(edit.get("attachments")))


def _parse_reaction(reaction: Any, base: dict[str, Any]) -> Event:
    if not isinstance(reaction, dict):
        return IgnoredEvent(**base, type="reaction", reason="reaction is not an object")
    mid = read_mid(reaction.get("mid"))
    if mid is None:
        return IgnoredEvent(**base, type="reaction", reason="reaction without a usable mid")
    action = reaction.get("action")
    action = action.strip().lower() if isinstance(action, str) else "react"
    if action not in ("react", "unreact"):
        return IgnoredEvent(**base, type="reaction", reason=f"unknown reaction action {action[:20]!r}")
    return ReactionEvent(**base, mid=mid, action=action,
                         reaction=read_short(reaction.get("reaction")), emoji=read_short(reaction.get("emoji")))


def _parse_read(read: Any, base: dict[str, Any]) -> Event:
    if not isinstance(read, dict):
        return IgnoredEvent(**base, type="seen", reason="read is not an object")
    mid = read_mid(read.get("mid"))
    watermark = read_time(read.get("watermark"))
    if mid is None and watermark is None:
        return IgnoredEvent(**base, type="seen", reason="read without a mid or a watermark")
    return SeenEvent(**base, mid=mid, watermark=watermark)


def _parse_postback(postback: Any, base: dict[str, Any]) -> Event:
    if not isinstance(postback, dict):
        return IgnoredEvent(**base, type="postback", reason="postback is not an object")
    mid = read_mid(postback.get("mid"))
    if mid is None:
        # Postbacks before v11 carry no mid: one from the sender's id and the time keeps retries idempotent.
        if base["sender_id"] is None:
            return IgnoredEvent(**base, type="postback", reason="postback without a mid or a sender")
        mid = f"postback:{base['sender_id']}:{base['timestamp']}"
    referral = postback.get("referral")
    return PostbackEvent(**base, mid=mid, title=clean_text(postback.get("title")),
                         payload=clean_text(postback.get("payload")),
                         referral=strip_nul(referral) if isinstance(referral, dict) and referral else None)


def _shown(value: Any) -> str:
    """A refused id as a person reads it in the results (short)."""
    if isinstance(value, dict):
        value = value.get("id")
    return repr(value)[:40]


# --- What other parts need to know about an event ----------------------------------

def referral_ad(referral: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(ad id, ad title) of an ads referral, if it is one."""
    if not referral:
        return None, None
    context = _as_dict(referral.get("ads_context_data"))
    ad_id = read_id(referral.get("ad_id"))
    title = clean_text(context.get("ad_title"))
    return ad_id, title[:2000] if title else None


def referral_is_evidence(referral: dict[str, Any] | None) -> bool:
    """An ad (post or ad id) or a shop product referral: evidence of the product asked about."""
    if not referral:
        return False
    context = _as_dict(referral.get("ads_context_data"))
    if read_id(referral.get("ad_id")) or read_id(context.get("post_id")) or read_id(context.get("product_id")):
        return True
    return read_id(_as_dict(referral.get("product")).get("id")) is not None
