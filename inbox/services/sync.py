"""Resync: page through the Conversations API and merge what it returns with what webhooks wrote.

Safe at any time. Nothing is truncated or deleted: conversations are found by (account,
customer) and messages by (account, mid), and the unique constraints on both make a
repeat, a webhook arriving at the same moment, or a second run after a crashed one write
each row once. Every page is committed on its own, so a crashed run keeps what it did
and the next run only adds what is missing.

One Conversations API call brings a page of conversations with their participants and
their newest messages (field expansion). Meta details only a thread's 20 newest messages
(https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/conversations-api),
so older history cannot be read this way. Each call waits for the
account's shared Conversations API slot (GRAPH_CONVERSATIONS_RATE, 2/s); when Meta asks
for less data (code 1), the page size is halved.

Messages from the API are read with the webhook readers (services/events.py) into the
MessageEvent ingestion applies, and written by the one path every new message takes
(`ingest.messages.write_messages`, as a webhook's message is), so both write the same
thing: direction from `from.id`, `meta_timestamp` from `created_time`, Attachment rows with
type/source_url/media_id/title and the raw item, the list row, product evidence, the
customer's profile and the live updates. An outgoing message we do not hold first claims
one of our pending sends with the same content (as its echo would), else it is the
owner's (`instagram_app`). A message older than what the list row showed is history:
it counts as no unread and reopens nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from ..display import display_name
from ..extensions import db
from ..live.publish import publish
from ..models import Account, Conversation, JobRun, Message, Reaction, ms_to_datetime, utcnow
from . import conversations, identities, jobruns
from .events import AttachmentData, MessageEvent, clean_text, read_id, read_mid, read_short, read_time
from .graph import MESSAGE_FIELDS, GraphClient, GraphError, RateLimited, TokenInvalid, Transient
from .ingest.echoes import claim_pending
from .ingest.messages import NewMessage, write_messages

log = logging.getLogger(__name__)

RESYNC = "resync"
MAX_SUMMARY_ERRORS = 20
_REACTION_NAMES = {"like", "love", "laugh", "wow", "sad", "angry", "other"}


def conversation_fields(messages: int) -> str:
    """The field expansion of one page: participants and the newest messages with their details."""
    return f"id,updated_time,participants,messages.limit({int(messages)}){{{MESSAGE_FIELDS}}}"


# --- Reading the API's shapes (pure: no database, no network) --------------------------
# The same readers as webhooks (services/events.py), so ids, times and text are cleaned alike.

@dataclass(frozen=True)
class ApiMessage:
    """One message of the Conversations API as the MessageEvent ingestion applies, plus its reactions."""

    event: MessageEvent
    reactions: tuple[tuple[str, str], ...] = ()  # (reactor id, reaction)

    mid = property(lambda self: self.event.mid)
    timestamp = property(lambda self: self.event.timestamp)
    sender_id = property(lambda self: self.event.sender_id)
    text = property(lambda self: self.event.text)
    attachments = property(lambda self: self.event.attachments)


@dataclass(frozen=True)
class ApiConversation:
    graph_id: str | None
    customer_igsid: str | None
    customer_username: str | None
    messages: tuple[ApiMessage, ...] = ()
    skipped: str | None = None  # why it is not applied


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    """An edge's `data` list ({data: [...]}), a bare list, or nothing."""
    if isinstance(value, dict):
        value = value.get("data")
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _url(value: Any) -> str | None:
    text = (clean_text(value) or "").strip()
    return text if text and len(text) <= 8192 else None


def parse_time(value: Any) -> int | None:
    """Meta's ISO time ("2026-01-01T10:00:00+0000") or epoch seconds/ms, as ms."""
    return read_time(value)


def parse_attachments(data: dict[str, Any]) -> tuple[AttachmentData, ...]:
    """The API's attachments, shares and story mention as the attachment kinds webhooks use.

    The API says less than a webhook: files and images by their data,
    shared posts and reels only as a `share` link, a story mention with its id.
    """
    out: list[AttachmentData] = []
    for item in _items(data.get("attachments")):
        image, video = _dict(item.get("image_data")), _dict(item.get("video_data"))
        mime = clean_text(item.get("mime_type")) or ""
        if image:
            kind, url = "image", _url(image.get("url"))
        elif video:
            kind, url = "video", _url(video.get("url"))
        elif item.get("file_url"):
            kind, url = ("audio" if mime.startswith("audio/") else "file"), _url(item.get("file_url"))
        else:
            kind, url = "unknown", None
        out.append(AttachmentData(type=kind, raw=item, source_url=url, title=clean_text(item.get("name"))))
    for item in _items(data.get("shares")):
        out.append(AttachmentData(type="share", raw=item, source_url=_url(item.get("link")),
                                  media_id=read_id(item.get("id")),
                                  title=clean_text(item.get("name")) or clean_text(item.get("description"))))
    mention = _dict(_dict(data.get("story")).get("mention"))
    if mention:
        out.append(AttachmentData(type="story_mention", raw={"story": {"mention": mention}},
                                  source_url=_url(mention.get("link")), media_id=read_id(mention.get("id"))))
    return tuple(out)


def parse_message(data: Any, account_ig: str = "") -> ApiMessage | None:
    """One message of the Conversations API, or None when it has no usable id or time."""
    if not isinstance(data, dict):
        return None
    mid = read_mid(data.get("id"))
    ts = read_time(data.get("created_time"))
    if mid is None or ts is None:
        return None
    sender = read_id(_dict(data.get("from")).get("id"))
    recipients = [read_id(p.get("id")) for p in _items(data.get("to"))]
    reply_to = _dict(data.get("reply_to"))
    story_reply = _dict(_dict(data.get("story")).get("reply_to"))
    reactions = []
    for item in _items(data.get("reactions")):
        value = read_short(item.get("reaction"))
        users = item.get("users") if isinstance(item.get("users"), list) else []
        for user in users:
            user_id = read_id(_dict(user).get("id"))
            if user_id and value:
                reactions.append((user_id, value))
    event = MessageEvent(
        index=0, entry_id=account_ig or None, sender_id=sender, recipient_id=next((r for r in recipients if r), None),
        timestamp=ts, mid=mid, text=clean_text(data.get("message")) or None, attachments=parse_attachments(data),
        is_echo=bool(account_ig) and sender == account_ig, is_unsupported=data.get("is_unsupported") is True,
        reply_to_mid=read_mid(reply_to.get("mid")), reply_to_story_id=read_id(story_reply.get("id")),
        reply_to_story_url=_url(story_reply.get("link")),
    )
    return ApiMessage(event, tuple(reactions))


def parse_conversation(data: Any, account_ig: str) -> ApiConversation:
    """A conversation of the list: the customer (never the account itself) and its messages."""
    if not isinstance(data, dict):
        return ApiConversation(None, None, None, skipped="not an object")
    graph_id = read_id(data.get("id"), 255)
    customer = username = None
    for person in _items(data.get("participants")):
        person_id = read_id(person.get("id"))
        if person_id and person_id != account_ig:
            customer, username = person_id, clean_text(person.get("username"))
            break
    raw_messages = _items(data.get("messages"))
    if customer is None:
        # No participants list: the other side of any message.
        for item in raw_messages:
            sides = [read_id(_dict(item.get("from")).get("id"))] + [read_id(p.get("id")) for p in _items(item.get("to"))]
            customer = next((side for side in sides if side and side != account_ig), None)
            if customer:
                break
    if customer is None:
        return ApiConversation(graph_id, None, None, skipped="no participant other than the account itself")
    messages = [m for m in (parse_message(item, account_ig) for item in raw_messages) if m is not None]
    # Only messages with details can be stored: Meta gives ids alone past a thread's 20 newest.
    detailed = tuple(m for m in messages if m.sender_id is not None)
    return ApiConversation(graph_id, customer, (username or "").strip()[:255] or None, detailed)


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


def _insert_many(model, rows: list[dict[str, Any]], *, returning: list[str], conflict: list[str] | None = None):
    """INSERT many rows (… ON CONFLICT DO NOTHING with `conflict`) RETURNING the new ones.

    Never aborts the transaction on a duplicate (it is skipped, not an error). On
    PostgreSQL it is one short statement over column arrays unnested by the server:
    psycopg parses a long multi-row VALUES statement on the client, which cost more than
    the insert itself (bench/resync.py). Elsewhere SQLAlchemy batches one cached statement.
    """
    if not rows:
        return []
    table = model.__table__
    names = list(rows[0])
    postgres = db.session.get_bind().dialect.name == "postgresql"
    builder = postgresql.insert if postgres else sqlite.insert
    if postgres:
        arrays = select(*(func.unnest(bindparam(f"u_{name}", type_=ARRAY(table.c[name].type))) for name in names))
        stmt = builder(table).from_select(names, arrays)
        params: Any = {f"u_{name}": [row[name] for row in rows] for name in names}
    else:
        stmt, params = builder(table), rows
    if conflict:
        stmt = stmt.on_conflict_do_nothing(index_elements=conflict)
    return db.session.execute(stmt.returning(*(table.c[name] for name in returning)), params).all()


@dataclass
class Applied:
    conversation_id: int
    created: bool
    new_message_ids: list[int]
    changed: bool
    updated_message_ids: list[int] = field(default_factory=list)  # our pending sends the API confirmed


def apply_conversations(account: Account, apis: list[ApiConversation], summary: SyncSummary) -> list[Applied]:
    """Upsert conversations, their customers' usernames and the messages we do not hold yet.

    A whole page in a few statements (inside the caller's transaction): conversations by
    (account, customer) with INSERT … ON CONFLICT DO NOTHING, messages through
    `write_messages` (the webhooks' path), so what webhooks (or an earlier run) wrote stays
    as it is. An outgoing message we do not hold first claims one of our pending sends
    with the same content, as its echo would.
    """
    account_id, account_ig = account.id, account.ig_user_id
    apis = list({api.customer_igsid: api for api in reversed(apis)}.values())[::-1]  # one per customer
    if not apis:
        return []
    now = utcnow()
    created = {row.customer_igsid for row in _insert_many(Conversation, [
        {"account_id": account_id, "customer_igsid": api.customer_igsid, "graph_conversation_id": api.graph_id,
         "unread_count": 0, "status": "open", "created_at": now, "updated_at": now} for api in apis
    ], conflict=["account_id", "customer_igsid"], returning=["customer_igsid"])}
    # Locked in id order (ingestion locks the same way), fresh from the database.
    by_customer = {c.customer_igsid: c for c in db.session.scalars(
        select(Conversation)
        .where(Conversation.account_id == account_id,
               Conversation.customer_igsid.in_([api.customer_igsid for api in apis]))
        .order_by(Conversation.id).with_for_update().execution_options(populate_existing=True))}
    renamed = identities.save_participants(
        account, [(api.customer_igsid, api.customer_username) for api in apis if api.customer_username], now=now)
    summary.identities += len(renamed)
    identities.note_participants(account_id, [api.customer_igsid for api in apis])

    by_mid: dict[str, tuple[Conversation, ApiMessage]] = {}
    for api in apis:
        for m in sorted(api.messages, key=lambda m: (m.timestamp, m.mid)):
            by_mid.setdefault(m.mid, (by_customer[api.customer_igsid], m))  # a mid twice: the first keeps it
    summary.messages += len(by_mid)
    # What the list showed before this page: a message older than that is history.
    shown_until = {c.id: c.last_message_at for c in by_customer.values()}
    ids = {customer: c.id for customer, c in by_customer.items()}  # the rows are expired below
    changed_ids = set()
    for api in apis:
        conversation = by_customer[api.customer_igsid]
        if api.graph_id and conversation.graph_conversation_id != api.graph_id:
            conversation.graph_conversation_id = api.graph_id
            changed_ids.add(conversation.id)
    # Messages we hold stay as they are (a repeat changes nothing): only the others go on.
    held = set(db.session.scalars(select(Message.mid).where(Message.account_id == account_id,
                                                            Message.mid.in_(list(by_mid))))) if by_mid else set()
    claimed = _claim_our_sends(account_id, by_mid, held)
    for mid, message in claimed.items():
        conversation = by_mid[mid][0]
        conversations.touch(conversation, message, new=False, preview=conversations.message_preview(message))
    db.session.flush()  # the list rows as the ORM changed them, before the message path reads them

    # The rest goes the way a webhook's message goes: the one write path.
    items = []
    for mid, (conversation, m) in by_mid.items():
        if mid in claimed or mid in held:
            continue
        until = shown_until[conversation.id]
        items.append(NewMessage(m.event, account_id, account_ig, conversation.customer_igsid,
                                outgoing=m.event.is_echo,
                                history=until is not None and ms_to_datetime(m.timestamp) <= until))
    written = write_messages(items)
    for conversation in by_customer.values():
        db.session.expire(conversation)  # write_messages wrote the list rows with its own statements
    reaction_rows = []
    new_by_conversation: dict[int, list[int]] = {}
    for item, result in zip(items, written):
        if not result.created:
            continue
        new_by_conversation.setdefault(result.conversation_id, []).append(result.id)
        for reactor, value in dict(by_mid[item.event.mid][1].reactions).items():
            name = value if value in _REACTION_NAMES else None
            reaction_rows.append({"account_id": account_id, "message_id": result.id, "reactor_igsid": reactor,
                                  "reaction": name, "emoji": None if name else value, "meta_timestamp": None,
                                  "created_at": now})
    summary.created_messages += sum(len(ids) for ids in new_by_conversation.values())
    if reaction_rows:
        _insert_many(Reaction, reaction_rows, conflict=["message_id", "reactor_igsid"], returning=["id"])

    applied = []
    for api in apis:
        conversation_id = ids[api.customer_igsid]
        new = new_by_conversation.get(conversation_id, [])
        updated = sorted(message.id for message in claimed.values() if message.conversation_id == conversation_id)
        changed = (api.customer_igsid in created or api.customer_igsid in renamed or conversation_id in changed_ids
                   or bool(new) or bool(updated))
        applied.append(Applied(conversation_id, api.customer_igsid in created, sorted(new), changed, updated))
    summary.conversations += len(apis)
    summary.created_conversations += len(created)
    return applied


def _claim_our_sends(account_id: int, by_mid: dict[str, tuple[Conversation, ApiMessage]],
                     held: set[str]) -> dict[str, Message]:
    """Outgoing messages we do not hold that are our own pending sends: {mid: the send's row, now with it}.

    A send whose Send API answer has not come back yet has no mid; the API already lists
    it. Like its echo would, the message claims that row instead of becoming a second one.
    """
    outgoing = [mid for mid, (_, m) in by_mid.items() if m.event.is_echo]
    if not outgoing:
        return {}
    pending = set(db.session.scalars(
        select(Message.conversation_id).where(Message.account_id == account_id, Message.mid.is_(None),
                                              Message.direction == "out", Message.status == "pending").distinct()))
    if not pending:
        return {}
    claimed = {}
    for mid in outgoing:
        conversation, m = by_mid[mid]
        if mid not in held and conversation.id in pending:
            message = claim_pending(conversation.id, m.event)
            if message is not None:
                claimed[mid] = message
    return claimed


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
    """Live updates for what changed (the data is committed).

    New messages were published by the message path (message.created and the list row)
    when their page committed; here: our sends the API confirmed, and list rows that
    changed without a new message (a new or renamed conversation).
    """
    for item in applied:
        if not item.changed:
            continue
        for message_id in item.updated_message_ids:
            publish(account_id, "message.updated", conversation_id=item.conversation_id, message_id=message_id)
        if not item.new_message_ids:
            publish(account_id, "conversation.updated", conversation_id=item.conversation_id)


# --- The run ------------------------------------------------------------------------------

def start_resync(account_id: int, user_id: int | None = None, *, enqueue_job: bool = True) -> tuple[JobRun, bool]:
    """Start a resync of the account, or return the one already running."""
    return jobruns.start_or_get_running(RESYNC, account_id, "inbox.tasks.resync_account", user_id=user_id,
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
