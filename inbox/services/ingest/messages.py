"""The one path a new message takes into the database: set-based, for one message or a batch.

Every new message row an event brings is written by `write_messages`, in the caller's
transaction: a customer's message, one the owner typed in the Instagram app, the
tombstone of an unsend or the text of an edit that overtook its message. In a handful of
statements whatever the number of messages, it finds or creates the conversations and
locks them, inserts the messages (a mid already stored is a repeat, not an error),
stores their attachments, keeps each list row right (`conversations.touch`) and
registers the follow-ups that run after the commit: the customer's profile, media
downloads, product evidence and the live updates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from ...extensions import db
from ...live.publish import publish_after_commit
from ...models import Attachment, Conversation, Message, utcnow
from .. import activity, assignees, conversations, identities, media
from ..events import POST_ATTACHMENT_TYPES, MessageEvent, referral_ad, referral_is_evidence
from ..products import assignment
from ..transactions import Conflict

# The columns of a conversation this path reads, and (from the fourth on) writes back.
_CONVERSATION_FIELDS = ("id", "account_id", "customer_igsid", "last_message_at", "last_message_preview",
                        "last_message_direction", "last_message_sender_kind", "last_customer_message_at",
                        "unread_count", "status", "last_ad_id", "last_ad_title")
_WRITTEN_BACK = (*_CONVERSATION_FIELDS[3:], "updated_at")


@dataclass(frozen=True)
class NewMessage:
    """A message an event brings, with the account and customer it belongs to."""

    event: MessageEvent
    account_id: int
    account_ig: str
    customer: str
    outgoing: bool = False  # the owner typed it in the Instagram app (an echo that is not our send)
    is_deleted: bool = False  # an unsend that overtook its message: a tombstone
    edit_count: int = 0  # an edit that overtook its message: stored with the new text

    @property
    def direction(self) -> str:
        return "out" if self.outgoing else "in"

    @property
    def sender_kind(self) -> str:
        return "instagram_app" if self.outgoing else "customer"


@dataclass(frozen=True)
class Written:
    """What became of one NewMessage: a new row, or the row already stored under its mid."""

    created: bool
    id: int | None
    conversation_id: int | None
    mid: str
    direction: str | None
    sender_kind: str | None


def message_values(event: MessageEvent, account_id: int, account_ig: str, conversation_id: int, customer: str, *,
                   direction: str, sender_kind: str, now: datetime, edit_count: int = 0,
                   is_deleted: bool = False) -> dict[str, Any]:
    """The messages row for an event (webhook or Conversations API), every column given."""
    return {
        "account_id": account_id, "conversation_id": conversation_id, "mid": event.mid, "direction": direction,
        "sender_kind": sender_kind, "sender_igsid": customer if direction == "in" else account_ig,
        "text": None if is_deleted else event.text,
        "reply_to_mid": event.reply_to_mid, "reply_to_story_id": event.reply_to_story_id,
        "reply_to_story_url": event.reply_to_story_url, "quick_reply_payload": event.quick_reply_payload,
        "postback_payload": event.postback_payload, "referral": event.referral,
        "is_unsupported": event.is_unsupported, "status": "sent" if direction == "out" else None,
        "sent_at": now if direction == "out" else None,
        "is_deleted": is_deleted, "deleted_at": now if is_deleted else None,
        "edit_count": edit_count, "edited_at": now if edit_count else None,
        "meta_timestamp": event.timestamp, "created_at": now, "updated_at": now,
        "send_attempts": 0,
    }


def find_message(account_id: int, mid: str) -> Message | None:
    """The account's message with this mid."""
    return db.session.scalars(select(Message).where(Message.account_id == account_id, Message.mid == mid)).first()


def tombstone(message: Message) -> None:
    """Unsent: the row stays so the thread shows "unsent", without its text or media."""
    message.is_deleted = True
    message.deleted_at = utcnow()
    message.text = None
    message.previous_texts = None  # earlier versions of the text are the same words
    message.quick_reply_payload = None
    # The media goes with the message.
    for attachment in list(message.attachments):
        db.session.delete(attachment)
    message.attachments = []


def write_new(item: NewMessage) -> Written:
    """Write one message whose mid the caller just looked for and did not find.

    Finding it stored now means a concurrent delivery wrote it a moment ago: Conflict,
    so the caller's event is applied again from the start and finds that row.
    """
    [written] = write_messages([item])
    if not written.created:
        raise Conflict(f"message {item.event.mid} inserted concurrently")
    return written


def write_messages(items: list[NewMessage]) -> list[Written]:
    """Store new messages in the caller's transaction; one Written per item, in order.

    A mid already stored (a retry, a replay, the same event twice in a batch) is written
    once: the later items get the stored row, with created False, and change nothing. A
    conversation the batch created only for such repeats is removed again.
    """
    if not items:
        return []
    now = utcnow()
    found, created = _lock_conversations(sorted({(i.account_id, i.customer) for i in items}), now)
    before = {key: dict(vars(c)) for key, c in found.items()}
    rows = [message_values(i.event, i.account_id, i.account_ig, found[(i.account_id, i.customer)].id, i.customer,
                           direction=i.direction, sender_kind=i.sender_kind, now=now, edit_count=i.edit_count,
                           is_deleted=i.is_deleted) for i in items]
    inserted = {(r.account_id, r.mid): r.id for r in _execute("insert_messages", rows)}
    repeats = {(i.account_id, i.event.mid) for i in items} - set(inserted)
    stored = {}
    if repeats:
        stored = {(r.account_id, r.mid): r for r in db.session.execute(
            select(Message.id, Message.account_id, Message.mid, Message.conversation_id, Message.direction,
                   Message.sender_kind)
            .where(tuple_(Message.account_id, Message.mid).in_(sorted(repeats)))).all()}
    _drop_unused(found, created, {(i.account_id, i.customer) for i in items if (i.account_id, i.event.mid) in inserted})
    assignees.note_new_conversations([(key[0], found[key].id) for key in sorted(created) if key in found])

    results: list[Written] = []
    attachment_rows: list[dict[str, Any]] = []
    participants: dict[int, list[str]] = {}
    touched: dict[int, Any] = {}
    new_mids = set()
    for item, row in zip(items, rows):
        event, key = item.event, (item.account_id, item.event.mid)
        if key not in inserted or key in new_mids:
            results.append(_repeat(item, stored.get(key), inserted.get(key), found))
            continue
        new_mids.add(key)
        message_id = inserted[key]
        conversation = found[(item.account_id, item.customer)]
        types = [] if item.is_deleted else [a.type for a in event.attachments]
        conversations.touch(conversation, SimpleNamespace(**row), preview=conversations.preview_text(
            row["text"], types, is_deleted=item.is_deleted, is_unsupported=event.is_unsupported))
        ad_id, ad_title = referral_ad(event.referral)
        if ad_id or ad_title:
            conversation.last_ad_id = ad_id or conversation.last_ad_id
            conversation.last_ad_title = ad_title or conversation.last_ad_title
        if not item.is_deleted:
            attachment_rows += [{"account_id": item.account_id, "message_id": message_id, "position": n,
                                 "type": a.type, "raw": a.raw, "source_url": a.source_url, "media_id": a.media_id,
                                 "title": a.title, "created_at": now} for n, a in enumerate(event.attachments)]
            if any(t in POST_ATTACHMENT_TYPES for t in types) or referral_is_evidence(event.referral):
                assignment.note_evidence(message_id)
        participants.setdefault(item.account_id, []).append(item.customer)
        touched.setdefault(conversation.id, conversation)
        publish_after_commit(item.account_id, "message.created", conversation_id=conversation.id,
                             message_id=message_id)
        results.append(Written(True, message_id, conversation.id, event.mid, item.direction, item.sender_kind))

    for account_id, customers in participants.items():  # one identity query per account, not per message
        identities.note_participants(account_id, customers)
    if attachment_rows:
        attachments = Attachment.__table__
        media.note_attachments(db.session.scalars(insert(attachments).returning(attachments.c.id),
                                                  attachment_rows).all())
    _write_back([c for key, c in found.items() if vars(c) != before[key]], now)
    for key, c in found.items():  # a customer writing again reopens a done conversation: a line in its activity
        if before[key].get("status") == "done" and c.status == "open":
            activity.record_event(c.account_id, c.id, "reopened", detail="the customer wrote again")
    for conversation in touched.values():
        publish_after_commit(conversation.account_id, "conversation.updated", conversation_id=conversation.id)
    return results


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _execute(name: str, params: list[dict[str, Any]]) -> list:
    """Run one of this path's statements, built once per dialect: once, or for many parameter sets."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql" and len(params) > 1 and name in _RECORDSET_INSERTS:
        return _insert_recordset(name, params)
    statement = _STATEMENTS.get((dialect, name))
    if statement is None:
        statement = _STATEMENTS[(dialect, name)] = _build(dialect, name)
    if len(params) == 1:  # a single delivery: a plain execute, cheaper than an executemany of one
        result = db.session.execute(statement, params[0])
    else:
        result = db.session.execute(statement, params)
    return result.all() if result.returns_rows else []


# PostgreSQL: many rows go in as ONE JSON parameter unpacked by jsonb_to_recordset, so the
# statement is short and always the same (the driver parses it once; a multi-row VALUES
# list is a new, long statement for every batch size, and parsing it cost more than the
# insert itself).
_RECORDSET_INSERTS = {"insert_messages": ("messages", ("account_id", "mid")),
                      "create_conversations": ("conversations", ("account_id", "customer_igsid"))}


def _insert_recordset(name: str, params: list[dict[str, Any]]) -> list:
    key = ("postgresql-recordset", name, tuple(params[0]))
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = _build_recordset(name, tuple(params[0]))
    rows = json.dumps([{k: _jsonable(v) for k, v in row.items()} for row in params], separators=(",", ":"))
    return db.session.execute(statement, {"rows": rows}).all()


def _build_recordset(name: str, columns: tuple[str, ...]):
    table_name, conflict = _RECORDSET_INSERTS[name]
    table = Conversation.__table__ if table_name == "conversations" else Message.__table__
    dialect = postgresql.dialect()
    quoted = ", ".join(f'"{c}"' for c in columns)
    shape = ", ".join(f'"{c}" {table.c[c].type.compile(dialect=dialect)}' for c in columns)
    returning = ([table.c[f] for f in _CONVERSATION_FIELDS] if name == "create_conversations"
                 else [table.c.id, table.c.account_id, table.c.mid])
    sql = (f"INSERT INTO {table_name} ({quoted}) SELECT {quoted} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
           f"AS r({shape}) ON CONFLICT ({', '.join(conflict)}) DO NOTHING "
           f"RETURNING {', '.join(c.name for c in returning)}")
    return text(sql).columns(*returning)


def _jsonable(value: Any) -> Any:
    """A column value as JSON: times as naive UTC (what UTCDateTime stores), the rest as is."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    return value


def _build(dialect: str, name: str):
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    conversations_table, messages_table = Conversation.__table__, Message.__table__
    columns = [conversations_table.c[field] for field in _CONVERSATION_FIELDS]
    if name == "lock_conversation":
        return (select(*columns)
                .where(conversations_table.c.account_id == bindparam("account_id"),
                       conversations_table.c.customer_igsid == bindparam("customer_igsid"))
                .with_for_update())
    if name == "create_conversations":
        # VALUES come from the parameters' keys (always the same set, so it compiles once).
        return (builder(conversations_table)
                .on_conflict_do_nothing(index_elements=["account_id", "customer_igsid"]).returning(*columns))
    if name == "insert_messages":
        return (builder(messages_table).on_conflict_do_nothing(index_elements=["account_id", "mid"])
                .returning(messages_table.c.id, messages_table.c.account_id, messages_table.c.mid))
    if name == "write_back":
        return (update(conversations_table).where(conversations_table.c.id == bindparam("_id"))
                .values({field: bindparam(f"v_{field}") for field in _WRITTEN_BACK}))
    raise KeyError(name)


def _lock_conversations(keys: list[tuple[int, str]], now: datetime) -> tuple[dict[tuple[int, str], Any], set]:
    """The conversations of these (account, customer) keys, created when missing, locked for the transaction.

    One key (a single delivery): lock the row, else create it; holding nothing else, the
    transaction may safely wait for a concurrent creator. Several: create the missing
    ones in key order, then lock them all in id order, the order every writer of several
    conversations keeps (resync too), so concurrent batches wait for each other and never
    deadlock.
    """
    new = [{"account_id": a, "customer_igsid": c, "unread_count": 0, "status": "open", "created_at": now,
            "updated_at": now} for a, c in keys]
    if len(keys) == 1:
        key = {"account_id": keys[0][0], "customer_igsid": keys[0][1]}
        rows = _execute("lock_conversation", [key])
        created = set()
        if not rows:
            rows = _execute("create_conversations", new)
            if rows:
                created = set(keys)
            else:  # another delivery created it a moment ago
                rows = _execute("lock_conversation", [key])
                if not rows:
                    raise Conflict("conversation vanished")
    else:
        created = {(r.account_id, r.customer_igsid) for r in _execute("create_conversations", new)}
        table = Conversation.__table__
        rows = db.session.execute(
            select(*(table.c[field] for field in _CONVERSATION_FIELDS))
            .where(tuple_(table.c.account_id, table.c.customer_igsid).in_(keys))
            .order_by(table.c.id).with_for_update()
        ).all()
    return {(r.account_id, r.customer_igsid): SimpleNamespace(**r._asdict()) for r in rows}, created


def _drop_unused(found: dict, created: set, used: set) -> None:
    """Remove conversations created here that got no message: their items were all repeats stored elsewhere."""
    unused = [found.pop(key).id for key in sorted(created - used)]
    if unused:
        db.session.execute(delete(Conversation).where(Conversation.id.in_(unused))
                           .execution_options(synchronize_session=False))


def _repeat(item: NewMessage, stored, inserted_id: int | None, found: dict) -> Written:
    if stored is not None:
        return Written(False, stored.id, stored.conversation_id, item.event.mid, stored.direction, stored.sender_kind)
    if inserted_id is not None:  # the same mid twice in this batch
        conversation = found[(item.account_id, item.customer)]
        return Written(False, inserted_id, conversation.id, item.event.mid, item.direction, item.sender_kind)
    return Written(False, None, None, item.event.mid, None, None)


def _write_back(changed: list, now: datetime) -> None:
    """The list rows that changed, written back with one UPDATE statement."""
    if changed:
        _execute("write_back", [{"_id": c.id, **{f"v_{field}": getattr(c, field) for field in _WRITTEN_BACK[:-1]},
                                 "v_updated_at": now} for c in changed])
