"""Resync: page through the Conversations API and merge what it returns with what webhooks wrote.

Safe at any time. Nothing is truncated or deleted: conversations are found by (account,
customer) and messages by (account, mid), and the unique constraints on both make a
repeat, a webhook arriving at the same moment, or a second run after a crashed one write
each row once. Every page is committed on its own, so a crashed run keeps what it did
and the next run only adds what is missing.

One Conversations API call brings a page of conversations with their participants and
their newest messages (field expansion). Meta details only a thread's 20 newest messages
(reference 3.4), so older history cannot be read this way. Each call waits for the
account's shared Conversations API slot (GRAPH_CONVERSATIONS_RATE, 2/s); when Meta asks
for less data (code 1), the page size is halved.

Messages from the API follow ingestion's conventions (reference 3.3 vs 2.2): direction
from `from.id`; an outgoing message we do not hold is the owner's (`instagram_app`);
`meta_timestamp` from `created_time`; attachments become Attachment rows with
type/source_url/media_id/title and the raw item kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite

from ..display import display_name
from ..extensions import db
from ..models import Account, Attachment, Conversation, JobRun, Message, Reaction, utcnow
from . import identities, jobruns, media, products, realtime
from .graph import MESSAGE_FIELDS, GraphClient, GraphError, RateLimited, TokenInvalid, Transient

log = logging.getLogger(__name__)

RESYNC = "resync"
MAX_SUMMARY_ERRORS = 20
PREVIEW_LENGTH = 255
# Kept in step with ingestion's list-preview words (services/ingest.py).
_ATTACHMENT_PREVIEWS = {
    "image": "Photo", "video": "Video", "audio": "Voice message", "file": "File", "share": "Shared a post",
    "story_mention": "Mentioned you in their story", "unknown": "Attachment",
}
_REACTION_NAMES = {"like", "love", "laugh", "wow", "sad", "angry", "other"}


def conversation_fields(messages: int) -> str:
    """The field expansion of one page: participants and the newest messages with their details."""
    return f"id,updated_time,participants,messages.limit({int(messages)}){{{MESSAGE_FIELDS}}}"


# --- Reading the API's shapes (pure: no database, no network) --------------------------

@dataclass(frozen=True)
class ApiAttachment:
    type: str
    raw: dict[str, Any]
    source_url: str | None = None
    media_id: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ApiMessage:
    mid: str
    timestamp: int  # ms
    sender_id: str | None
    text: str | None = None
    attachments: tuple[ApiAttachment, ...] = ()
    reply_to_mid: str | None = None
    reply_to_story_id: str | None = None
    reply_to_story_url: str | None = None
    is_unsupported: bool = False
    reactions: tuple[tuple[str, str], ...] = ()  # (reactor id, reaction)


@dataclass(frozen=True)
class ApiConversation:
    graph_id: str | None
    customer_igsid: str | None
    customer_username: str | None
    messages: tuple[ApiMessage, ...] = ()
    skipped: str | None = None  # why it is not applied


def _id(value: Any, limit: int = 64) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > limit or len(value.split()) != 1 or "\x00" in value:
        return None
    return value


def _str(value: Any, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "")
    return (value[:limit] if limit else value) or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    """An edge's `data` list ({data: [...]}), a bare list, or nothing."""
    if isinstance(value, dict):
        value = value.get("data")
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def parse_time(value: Any) -> int | None:
    """Meta's ISO time ("2026-01-01T10:00:00+0000") or epoch seconds/ms, as ms."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return int(number if number >= 1e11 else number * 1000) if number > 0 else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def parse_attachments(data: dict[str, Any]) -> tuple[ApiAttachment, ...]:
    """The API's attachments, shares and story mention as our attachment kinds."""
    out: list[ApiAttachment] = []
    for item in _items(data.get("attachments")):
        image, video = _dict(item.get("image_data")), _dict(item.get("video_data"))
        mime = _str(item.get("mime_type"), 128) or ""
        if image:
            kind, url = "image", _str(image.get("url"))
        elif video:
            kind, url = "video", _str(video.get("url"))
        elif item.get("file_url"):
            kind, url = ("audio" if mime.startswith("audio/") else "file"), _str(item.get("file_url"))
        else:
            kind, url = "unknown", None
        out.append(ApiAttachment(kind, item, url, None, _str(item.get("name"), 500)))
    for item in _items(data.get("shares")):
        out.append(ApiAttachment("share", item, _str(item.get("link")), _id(item.get("id")),
                                 _str(item.get("name") or item.get("description"))))
    mention = _dict(_dict(data.get("story")).get("mention"))
    if mention:
        out.append(ApiAttachment("story_mention", {"story": {"mention": mention}}, _str(mention.get("link")),
                                 _id(mention.get("id"))))
    return tuple(out)


def parse_message(data: Any) -> ApiMessage | None:
    """One message of the Conversations API, or None when it has no usable id or time."""
    if not isinstance(data, dict):
        return None
    mid = _id(data.get("id"), 512)
    ts = parse_time(data.get("created_time"))
    if mid is None or ts is None:
        return None
    reply_to = _dict(data.get("reply_to"))
    story_reply = _dict(_dict(data.get("story")).get("reply_to"))
    reactions = []
    for item in _items(data.get("reactions")):
        value = _str(item.get("reaction"), 32)
        for user in item.get("users") or []:
            user_id = _id(_dict(user).get("id"))
            if user_id and value:
                reactions.append((user_id, value))
    has_details = any(key in data for key in ("from", "message", "attachments", "shares", "story"))
    return ApiMessage(
        mid=mid, timestamp=ts, sender_id=_id(_dict(data.get("from")).get("id")),
        text=_str(data.get("message")) if has_details else None,
        attachments=parse_attachments(data), reply_to_mid=_id(reply_to.get("mid"), 512),
        reply_to_story_id=_id(story_reply.get("id")), reply_to_story_url=_str(story_reply.get("link")),
        is_unsupported=data.get("is_unsupported") is True, reactions=tuple(reactions),
    )


def parse_conversation(data: Any, account_ig: str) -> ApiConversation:
    """A conversation of the list: the customer (never the account itself) and its messages."""
    if not isinstance(data, dict):
        return ApiConversation(None, None, None, skipped="not an object")
    graph_id = _id(data.get("id"), 255)
    customer = username = None
    for person in _items(data.get("participants")):
        person_id = _id(person.get("id"))
        if person_id and person_id != account_ig:
            customer, username = person_id, _str(person.get("username"), 255)
            break
    raw_messages = _items(data.get("messages"))
    messages = [m for m in (parse_message(item) for item in raw_messages) if m is not None]
    if customer is None:
        # No participants list: the other side of any message.
        for item in raw_messages:
            sides = [_id(_dict(item.get("from")).get("id"))]
            sides += [_id(p.get("id")) for p in _items(_dict(item).get("to"))]
            customer = next((s for s in sides if s and s != account_ig), None)
            if customer:
                break
    if customer is None:
        return ApiConversation(graph_id, None, None, skipped="no participant other than the account itself")
    # Only messages with details can be stored: Meta gives ids alone past a thread's 20 newest.
    detailed = tuple(m for m in messages if m.sender_id is not None)
    return ApiConversation(graph_id, customer, username, detailed)


# --- Applying --------------------------------------------------------------------------

@dataclass
class SyncSummary:
    pages: int = 0
    conversations: int = 0
    created_conversations: int = 0
    messages: int = 0
    created_messages: int = 0
    identities: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def error(self, where: str, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_SUMMARY_ERRORS:
            self.errors.append({"conversation": where, "error": reason[:300]})

    def as_dict(self) -> dict[str, Any]:
        return {"conversations": self.conversations, "created_conversations": self.created_conversations,
                "messages": self.messages, "created_messages": self.created_messages,
                "identities": self.identities, "skipped": self.skipped, "failed": self.failed,
                "total": self.conversations, "calls": self.pages, "errors": list(self.errors)}


def _insert_ignore(model, rows: list[dict[str, Any]], conflict: list[str], returning: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING for many rows: those that were new.

    It never aborts the transaction (a duplicate is skipped, not an error), and it is one
    cached statement executed for many rows (SQLAlchemy's insertmanyvalues batches them).
    """
    if not rows:
        return []
    table = model.__table__
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (builder(table).on_conflict_do_nothing(index_elements=conflict)
            .returning(*(table.c[name] for name in returning)))
    return db.session.execute(stmt, rows).all()


def preview_text(text: str | None, attachment_types: list[str], is_unsupported: bool) -> str:
    if text and text.strip():
        line = " ".join(text.split())
        return line if len(line) <= PREVIEW_LENGTH else line[: PREVIEW_LENGTH - 1] + "…"
    if attachment_types:
        return _ATTACHMENT_PREVIEWS.get(attachment_types[0], "Attachment")
    return "Unsupported message" if is_unsupported else "Message"


def _ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass
class Applied:
    conversation_id: int
    created: bool
    new_message_ids: list[int]
    changed: bool


def apply_conversations(account: Account, apis: list[ApiConversation], summary: SyncSummary) -> list[Applied]:
    """Upsert conversations, their customers' usernames and the messages we do not hold yet.

    A whole page in a few statements (inside the caller's transaction): conversations by
    (account, customer), messages by (account, mid), both INSERT … ON CONFLICT DO NOTHING,
    so what webhooks (or an earlier run) wrote stays as it is.
    """
    account_id, account_ig = account.id, account.ig_user_id
    apis = list({api.customer_igsid: api for api in reversed(apis)}.values())[::-1]  # one per customer
    if not apis:
        return []
    now = utcnow()
    created = {row.customer_igsid for row in _insert_ignore(Conversation, [
        {"account_id": account_id, "customer_igsid": api.customer_igsid, "graph_conversation_id": api.graph_id,
         "unread_count": 0, "status": "open", "created_at": now, "updated_at": now} for api in apis
    ], ["account_id", "customer_igsid"], ["customer_igsid"])}
    # Locked in id order (concurrent writers lock in the same order), fresh from the database.
    conversations = {c.customer_igsid: c for c in db.session.scalars(
        select(Conversation)
        .where(Conversation.account_id == account_id,
               Conversation.customer_igsid.in_([api.customer_igsid for api in apis]))
        .order_by(Conversation.id).with_for_update().execution_options(populate_existing=True))}
    renamed = identities.save_participants(
        account, [(api.customer_igsid, api.customer_username) for api in apis if api.customer_username], now=now)
    summary.identities += len(renamed)
    identities.note_participants(account_id, [api.customer_igsid for api in apis])

    rows, by_mid = [], {}
    for api in apis:
        conversation = conversations[api.customer_igsid]
        for m in sorted({m.mid: m for m in api.messages}.values(), key=lambda m: (m.timestamp, m.mid)):
            if m.mid in by_mid:  # the same mid in two threads: the first keeps it
                continue
            by_mid[m.mid] = (conversation, m)
            outgoing = m.sender_id == account_ig
            rows.append({
                "account_id": account_id, "conversation_id": conversation.id, "mid": m.mid,
                "direction": "out" if outgoing else "in",
                "sender_kind": "instagram_app" if outgoing else "customer",
                "sender_igsid": account_ig if outgoing else api.customer_igsid, "text": m.text,
                "reply_to_mid": m.reply_to_mid, "reply_to_story_id": m.reply_to_story_id,
                "reply_to_story_url": m.reply_to_story_url, "is_unsupported": m.is_unsupported,
                "status": "sent" if outgoing else None, "sent_at": now if outgoing else None,
                "is_deleted": False, "edit_count": 0, "meta_timestamp": m.timestamp,
                "created_at": now, "updated_at": now, "send_attempts": 0,
            })
    summary.messages += len(rows)
    inserted = {mid: message_id for message_id, mid in
                _insert_ignore(Message, rows, ["account_id", "mid"], ["id", "mid"])}
    summary.created_messages += len(inserted)

    attachment_rows, reaction_rows, evidence = [], [], []
    new_by_conversation: dict[int, list[tuple[int, ApiMessage]]] = {}
    for mid, message_id in inserted.items():
        conversation, m = by_mid[mid]
        new_by_conversation.setdefault(conversation.id, []).append((message_id, m))
        for position, a in enumerate(m.attachments):
            attachment_rows.append({"account_id": account_id, "message_id": message_id, "position": position,
                                    "type": a.type, "raw": a.raw, "source_url": a.source_url,
                                    "media_id": a.media_id, "title": a.title, "created_at": now})
        if any(a.type == "share" for a in m.attachments):
            evidence.append(message_id)
        for reactor, value in dict(m.reactions).items():
            name = value if value in _REACTION_NAMES else None
            reaction_rows.append({"account_id": account_id, "message_id": message_id, "reactor_igsid": reactor,
                                  "reaction": name, "emoji": None if name else value, "meta_timestamp": None,
                                  "created_at": now})
    if attachment_rows:
        media.note_attachments(list(db.session.scalars(insert(Attachment).returning(Attachment.id),
                                                       attachment_rows)))
    if reaction_rows:
        db.session.execute(insert(Reaction), reaction_rows)
    for message_id in evidence:
        products.note_evidence(message_id)

    applied = []
    for api in apis:
        conversation = conversations[api.customer_igsid]
        changed = api.customer_igsid in created or api.customer_igsid in renamed
        if api.graph_id and conversation.graph_conversation_id != api.graph_id:
            conversation.graph_conversation_id = api.graph_id
            changed = True
        new = new_by_conversation.get(conversation.id, [])
        if new:
            _touch_conversation(conversation, [m for _, m in new], account_ig)
            changed = True
        applied.append(Applied(conversation.id, api.customer_igsid in created, sorted(i for i, _ in new), changed))
    summary.conversations += len(apis)
    summary.created_conversations += len(created)
    return applied


def _touch_conversation(conversation: Conversation, new: list[ApiMessage], account_ig: str) -> None:
    """The list row after new messages: last message, the customer's window, unread and status.

    A message older than what the list already showed is history: it is stored, but it
    does not count as unread nor reopen a conversation marked done.
    """
    shown_until = conversation.last_message_at
    for m in sorted(new, key=lambda m: (m.timestamp, m.mid)):
        at = _ms_to_datetime(m.timestamp)
        outgoing = m.sender_id == account_ig
        if conversation.last_message_at is None or at >= conversation.last_message_at:
            conversation.last_message_at = at
            conversation.last_message_preview = preview_text(m.text, [a.type for a in m.attachments],
                                                             m.is_unsupported)
            conversation.last_message_direction = "out" if outgoing else "in"
            conversation.last_message_sender_kind = "instagram_app" if outgoing else "customer"
        if not outgoing:
            if conversation.last_customer_message_at is None or at > conversation.last_customer_message_at:
                conversation.last_customer_message_at = at
            if shown_until is None or at > shown_until:
                conversation.unread_count = (conversation.unread_count or 0) + 1
                if conversation.status == "done":
                    conversation.status = "open"  # the customer wrote again
        elif conversation.last_customer_message_at is None or at >= conversation.last_customer_message_at:
            conversation.unread_count = 0  # the owner answered: nothing before it is waiting


def apply_page(account: Account, page: list[Any], summary: SyncSummary) -> list[Applied]:
    """Apply one page of conversations (committed); a conversation that fails is skipped and reported."""
    parsed = []
    for data in page:
        api = parse_conversation(data, account.ig_user_id)
        if api.skipped:
            summary.skipped += 1
            continue
        parsed.append(api)
    before = _counts(summary)
    try:
        applied = apply_conversations(account, parsed, summary)
        db.session.commit()
        return applied
    except Exception:
        db.session.rollback()
        log.warning("resync page failed as a whole; applying its conversations one by one", exc_info=True)
    _restore(summary, before)
    applied = []
    for api in parsed:
        snapshot = _counts(summary)
        try:
            applied += apply_conversations(account, [api], summary)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            _restore(summary, snapshot)
            log.exception("resync of conversation %s failed", api.graph_id)
            summary.error(display_name(None, api.customer_igsid), f"{type(exc).__name__}: {exc}")
    return applied


_COUNTERS = ("conversations", "created_conversations", "messages", "created_messages", "identities")


def _counts(summary: SyncSummary) -> dict[str, int]:
    return {name: getattr(summary, name) for name in _COUNTERS}


def _restore(summary: SyncSummary, counts: dict[str, int]) -> None:
    for name, value in counts.items():
        setattr(summary, name, value)


def _publish(account_id: int, applied: list[Applied]) -> None:
    """Live updates for what changed (the data is committed)."""
    for item in applied:
        if not item.changed:
            continue
        if not item.created:
            # A thread that is open somewhere gets its missed messages; new threads come with the list.
            for message_id in item.new_message_ids:
                realtime.publish(account_id, "message.created", conversation_id=item.conversation_id,
                                 message_id=message_id)
        realtime.publish(account_id, "conversation.updated", conversation_id=item.conversation_id)


# --- The run ------------------------------------------------------------------------------

def start_resync(account_id: int, user_id: int | None = None, *, enqueue_job: bool = True) -> tuple[JobRun, bool]:
    """Start a resync of the account, or return the one already running."""
    return jobruns.start_or_get_running(RESYNC, account_id, "inbox.jobs.resync_account", user_id=user_id,
                                        queue="low", enqueue_job=enqueue_job)


def resync_account(job_run_id: int) -> None:
    """The resync run: every page of conversations, merged, with progress and a summary."""
    with jobruns.running(job_run_id) as run:
        if run is None:
            return
        _resync(run)


def _resync(run: jobruns.RunHandle) -> None:
    cfg = current_app.config
    account = db.session.get(Account, run.account_id)
    summary = SyncSummary()
    run.partial_summary = summary.as_dict()
    run.progress(0, None, force=True)
    page_size = max(1, int(cfg["SYNC_PAGE_SIZE"]))
    fields = conversation_fields(int(cfg["SYNC_MESSAGES_PER_CONVERSATION"]))
    after: str | None = None
    try:
        client = GraphClient.for_account(account)
        while True:
            try:
                page, next_after = client.conversations_page(fields=fields, limit=page_size, after=after)
            except Transient as exc:
                # "Please reduce the amount of data you're asking for" (code 1): a smaller page.
                if exc.code != 1 or page_size == 1:
                    raise
                page_size = max(1, page_size // 2)
                summary.pages += 1
                log.info("resync of account %s: Meta asked for less data; %d per page now", account.id, page_size)
                continue
            summary.pages += 1
            applied = apply_page(account, page, summary)
            _publish(account.id, applied)
            run.partial_summary = summary.as_dict()
            last = next_after is None
            run.progress(summary.conversations + summary.skipped + summary.failed,
                         summary.conversations + summary.skipped + summary.failed if last else None, force=last)
            if last:
                break
            after = next_after
    except TokenInvalid as exc:
        identities.account_dead(account.id, exc)
        message = ("Instagram refused the account's access token, so the resync stopped. "
                   "Reconnect the account, then resync again.")
        run.finish({**summary.as_dict(), "stopped": message}, state="failed", error=message)
        return
    except RateLimited as exc:
        wait = f" for about {int(exc.retry_after // 60) + 1} minutes" if exc.retry_after else ""
        message = f"Instagram asked us to slow down{wait}; what was read so far is kept. Resync again later."
        run.finish({**summary.as_dict(), "stopped": message}, state="failed", error=message)
        return
    except GraphError as exc:
        message = f"Instagram answered with an error ({exc}); what was read so far is kept."
        run.finish({**summary.as_dict(), "stopped": message}, state="failed", error=message)
        return
    run.finish(summary.as_dict())
