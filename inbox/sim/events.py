"""Webhook payloads as Meta builds them (https://developers.facebook.com/docs/instagram-platform/webhooks/examples),
their encoding and signatures.

Pure functions: no state, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json

REACTION_EMOJI = {
    "love": "\u2764\ufe0f", "like": "\U0001f44d", "laugh": "\U0001f602", "wow": "\U0001f62e",
    "sad": "\U0001f622", "angry": "\U0001f621", "other": "\U0001f525",
}

# The subscription field each kind of event needs; any of the names, as Meta's two
# flavours spell them differently. message_edit's field is uncertain there,
# so `messages` also carries it.
FIELDS_FOR = {
    "message": ("messages",),
    "echo": ("messages", "message_echoes"),
    "reaction": ("message_reactions",),
    "read": ("messaging_seen", "message_reads"),
    "postback": ("messaging_postbacks",),
    "referral": ("messaging_referral", "messaging_referrals"),
    "edit": ("message_edit", "message_edits", "messages"),
    "comment": ("comments",),
    "live_comment": ("live_comments",),
    "mention": ("mentions",),
}


def messaging(sender: str, recipient: str, timestamp_ms: int, **body) -> dict:
    """One messaging[] event: sender, recipient, ms timestamp and its body (message, reaction, …)."""
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": timestamp_ms, **body}


def message_body(mid: str, *, text: str | None = None, attachments: list[dict] | None = None,
                 is_echo: bool = False, is_deleted: bool = False, is_unsupported: bool = False,
                 reply_to: dict | None = None, quick_reply: dict | None = None, referral: dict | None = None) -> dict:
    message: dict = {"mid": mid}
    if text is not None:
        message["text"] = text
    if attachments:
        message["attachments"] = attachments
    if is_echo:
        message["is_echo"] = True
    if is_deleted:
        message["is_deleted"] = True
    if is_unsupported:
        message["is_unsupported"] = True
    if reply_to:
        message["reply_to"] = reply_to
    if quick_reply:
        message["quick_reply"] = quick_reply
    if referral:
        message["referral"] = referral
    return message


def reaction_body(mid: str, action: str, reaction: str | None = None) -> dict:
    body = {"mid": mid, "action": action}
    if action == "react":
        body["reaction"] = reaction or "love"
        body["emoji"] = REACTION_EMOJI.get(body["reaction"], REACTION_EMOJI["other"])
    return body


def comment_change(comment, *, account_id: str, account_username: str, media_product_type: str = "FEED",
                   self_scoped_id: str | None = None, verb: str | None = None) -> dict:
    """A `comments` (or `live_comments`) change as Business Login sends it.

    Meta documents no edit or deletion payload for Instagram comments; the simulator sends
    the same value with a `verb` ("edited", "remove"), the Page-feed convention.
    """
    author = {"id": comment.author_id, "username": comment.username}
    if comment.own:
        author = {"id": account_id, "username": account_username, "self_ig_scoped_id": self_scoped_id or account_id}
    value: dict = {"id": comment.id, "from": author, "media": {"id": comment.media_id,
                                                               "media_product_type": media_product_type}}
    if not (verb == "remove"):
        value["text"] = comment.text
    if comment.parent_id:
        value["parent_id"] = comment.parent_id
    if verb:
        value["verb"] = verb
    return {"field": "live_comments" if comment.live else "comments", "value": value}


def entry(account_id: str, time_ms: int, events: list[dict], key: str = "messaging") -> dict:
    """One entry; `changes` entries carry their time in seconds, as Meta's do."""
    return {"time": time_ms // 1000 if key == "changes" else time_ms, "id": account_id, key: events}


def envelope(entries: list[dict]) -> dict:
    return {"object": "instagram", "entry": entries}


def encode(payload: dict) -> bytes:
    """The bytes Meta sends: compact JSON, non-ASCII as lowercase \\uXXXX, and / as \\/."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    # "/" occurs only inside JSON strings, and "\/" is a valid escape there.
    return text.replace("/", "\\/").encode("ascii")


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """X-Hub-Signature-256 (and the legacy SHA-1 header) over the exact bytes sent."""
    key = secret.encode()
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    }
