"""Apply parsed webhook events to the database: one transaction per event, idempotently.

The rules (ARCHITECTURE.md sections 2 and 5):
- the business side is the account; the customer is the sender, or the recipient of an
  echo; a conversation's customer is never the account itself;
- one message per (account, mid), whatever the retries, replays and echoes;
- an echo confirms our send by mid, else claims one pending send with the same content,
  else is a message the owner typed in the Instagram app;
- follow-ups (profile fetch, media download, product evidence, live updates) are
  registered inside the transaction and run only after it commits.

`reconcile_sent` is the other half of the echo race: the send job calls it when the Send
API answers, and it merges with whatever an echo already wrote.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Account, Attachment, Conversation, Message, Reaction, utcnow
from . import identities, media, products
from .events import (
    POST_ATTACHMENT_TYPES, AttachmentData, EditEvent, Event, IgnoredEvent, MessageEvent, PostbackEvent,
    ReactionEvent, ReferralEvent, SeenEvent, referral_ad, referral_is_evidence,
)

log = logging.getLogger(__name__)

ACTIONS = ("created", "duplicate", "confirmed", "claimed", "updated", "deleted", "ignored")
# Sender kinds whose rows we wrote before sending (they wait for the Send API's mid).
OUR_SENDS = ("staff", "automation")
PREVIEW_LENGTH = 255
_ATTACHMENT_PREVIEWS = {
    "image": "Photo", "video": "Video", "audio": "Voice message", "file": "File", "ig_post": "Shared a post",
    "share": "Shared a post", "ig_reel": "Shared a reel", "reel": "Shared a reel",
    "story_mention": "Mentioned you in their story", "ig_story": "Shared a story",
    "ephemeral": "Sent a disappearing photo", "fallback": "Shared a link", "template": "Shared a product",
    "sticker": "Sticker", "unknown": "Attachment",
}
_RETRIES = 3


class _Conflict(Exception):
    """A concurrent writer got there first; the event is applied again from the start."""


@dataclass
class Outcome:
    """What applying one event did; `line()` is the stable `webhooks ingest` output."""

    index: int
    type: str
    action: str
    reason: str = ""
    account: str | None = None
    account_id: int | None = None
    conversation_id: int | None = None
    customer_igsid: str | None = None
    mid: str | None = None
    direction: str | None = None
    sender_kind: str | None = None
    message_id: int | None = None
    error: str | None = None

    def line(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in (
            "type", "account", "conversation_id", "customer_igsid", "mid", "direction", "sender_kind",
            "action", "reason")}

    def result(self) -> dict[str, Any]:
        """The per-event record kept in WebhookDelivery.results."""
        return {k: v for k, v in vars(self).items() if v is not None and v != ""}


def event_type(event: Event) -> str:
    if isinstance(event, IgnoredEvent):
        return event.type
    if isinstance(event, MessageEvent):
        return "echo" if event.is_echo else "message"
    return event.kind


# --- Entry point ---------------------------------------------------------------------

def apply_event(event: Event, *, create_accounts: bool = False,
                before_commit: Callable[[Outcome], None] | None = None) -> Outcome:
    """Apply one event in its own transaction (committed); a conflict with a concurrent writer is retried.

    before_commit(outcome) runs inside the transaction, so the caller can record the
    outcome (the delivery's status) in the same commit.
    """
    for attempt in range(_RETRIES):
        try:
            outcome = _apply(event, create_accounts, first_try=attempt == 0)
            if before_commit is not None:
                before_commit(outcome)
            _relax_commit_durability()
            db.session.commit()
            return outcome
        except (IntegrityError, _Conflict) as exc:
            db.session.rollback()
            if isinstance(exc, IntegrityError):
                _forget_accounts()  # an account that vanished must not stay cached
            if attempt == _RETRIES - 1:
                raise
            log.debug("event %s conflicted with a concurrent writer; applying it again", event.index)
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _relax_commit_durability() -> None:
    """On PostgreSQL, let this commit return before its WAL reaches the disk.

    Safe for applying events because the delivery itself was committed durably first, and
    the WAL is replayed in order: after a database crash either the delivery's final status
    survived (and with it every event applied before it) or the delivery is still
    "received", which `webhooks replay --failed` picks up as interrupted. Nothing is lost;
    the webhook answers without one disk flush per event.
    """
    if current_app.config.get("WEBHOOK_ASYNC_COMMIT", True) and db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _apply(event: Event, create_accounts: bool, *, first_try: bool = False) -> Outcome:
    kind = event_type(event)
    outcome = Outcome(index=event.index, type=kind, action="ignored")
    if isinstance(event, IgnoredEvent):
        outcome.reason = event.reason
        return outcome
    if event.standby and not current_app.config.get("WEBHOOK_APPLY_STANDBY"):
        outcome.reason = "standby: another app owns this thread"
        return outcome

    account = _resolve_account(event, create_accounts, outcome)
    if account is None:
        return outcome
    account_id, account_ig = account
    outcome.account_id = account_id
    is_business_sender = event.sender_id == account_ig
    customer = event.recipient_id if (getattr(event, "is_echo", False) or is_business_sender) else event.sender_id
    if customer == account_ig:
        outcome.customer_igsid = None
        outcome.reason = "the account itself is not a customer (self messaging)"
        return outcome
    outcome.customer_igsid = customer

    if isinstance(event, MessageEvent):
        return _apply_message(event, account_id, account_ig, customer, outcome, insert_first=first_try)
    if isinstance(event, PostbackEvent):
        return _apply_message(_postback_as_message(event), account_id, account_ig, customer, outcome,
                              insert_first=first_try)
    if isinstance(event, EditEvent):
        return _apply_edit(event, account_id, account_ig, customer, outcome)
    if isinstance(event, ReactionEvent):
        return _apply_reaction(event, account_id, outcome)
    if isinstance(event, SeenEvent):
        return _apply_seen(event, account_id, account_ig, customer, outcome)
    if isinstance(event, ReferralEvent):
        return _apply_referral(event, account_id, customer, outcome)
    outcome.reason = f"unhandled event {kind}"
    return outcome


# --- Accounts ----------------------------------------------------------------------

_ACCOUNT_TTL = 60.0


def _account_cache() -> dict[str, tuple[int, str, float]]:
    return current_app.extensions.setdefault("inbox_ingest_accounts", {})


def _forget_accounts() -> None:
    _account_cache().clear()


def _lookup_account(ig_user_id: str) -> tuple[int, str] | None:
    """(id, status) of the account with this professional id; known accounts are cached briefly."""
    cache = _account_cache()
    hit = cache.get(ig_user_id)
    now = time.monotonic()
    if hit and hit[2] > now:
        return hit[0], hit[1]
    row = db.session.execute(select(Account.id, Account.status).where(Account.ig_user_id == ig_user_id)).first()
    if row is None:
        cache.pop(ig_user_id, None)
        return None
    cache[ig_user_id] = (row.id, row.status, now + _ACCOUNT_TTL)
    return row.id, row.status


def _resolve_account(event: Event, create: bool, outcome: Outcome) -> tuple[int, str] | None:
    """The account an event belongs to: entry.id, else the business side of the item."""
    business_side = event.sender_id if getattr(event, "is_echo", False) else event.recipient_id
    candidates = [c for c in (event.entry_id, business_side) if c]
    outcome.account = candidates[0] if candidates else None
    for ig_id in dict.fromkeys(candidates):
        found = _lookup_account(ig_id)
        if found is not None:
            outcome.account = ig_id
            account_id, status = found
            if status == "disabled":
                outcome.reason = "account disabled"
                return None
            return account_id, ig_id
    if not candidates:
        outcome.reason = "no account id in the event"
        return None
    if create and event.entry_id:
        from .accounts import AccountError, add_account

        try:
            account = add_account(event.entry_id)
        except AccountError as exc:
            if _lookup_account(event.entry_id) is None:
                outcome.reason = f"account not created: {exc}"
                return None
        else:
            log.info("created account %s from a webhook entry", account.ig_user_id)
        found = _lookup_account(event.entry_id)
        if found is not None:
            outcome.account = event.entry_id
            return found[0], event.entry_id
    outcome.reason = f"unknown account {outcome.account}"
    return None


# --- Rows -------------------------------------------------------------------------

def _insert(model, values: dict[str, Any], conflict: list[str]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING the row; None when the row already exists.

    It never aborts the transaction (unlike a plain INSERT that hits a unique constraint on
    PostgreSQL), so no SAVEPOINT is needed; PostgreSQL waits for a concurrent inserter of
    the same key and then does nothing.
    """
    dialect = db.session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = builder(model).values(**values).on_conflict_do_nothing(index_elements=conflict).returning(model)
    return db.session.scalars(stmt).first()


def _conversation(account_id: int, customer: str, *, create: bool) -> tuple[Conversation | None, bool]:
    """The customer's conversation, locked for this transaction; created when asked (safe under concurrency)."""
    query = (select(Conversation)
             .where(Conversation.account_id == account_id, Conversation.customer_igsid == customer)
             .with_for_update())
    conversation = db.session.scalars(query).first()
    if conversation is not None or not create:
        return conversation, False
    now = utcnow()
    conversation = _insert(Conversation, {
        "account_id": account_id, "customer_igsid": customer, "unread_count": 0, "status": "open",
        "created_at": now, "updated_at": now,
    }, ["account_id", "customer_igsid"])
    if conversation is not None:
        return conversation, True
    # Another delivery created it a moment ago.
    conversation = db.session.scalars(query).first()
    if conversation is None:
        raise _Conflict("conversation vanished")
    return conversation, False


def _lock_conversation(conversation_id: int) -> Conversation:
    return db.session.scalars(select(Conversation).where(Conversation.id == conversation_id)
                              .with_for_update().execution_options(populate_existing=True)).one()


def _message_by_mid(account_id: int, mid: str) -> Message | None:
    return db.session.scalars(select(Message).where(Message.account_id == account_id, Message.mid == mid)).first()


def _ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _datetime_to_ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def preview_text(text: str | None, attachment_types: list[str] | tuple[str, ...] = (), *,
                 is_deleted: bool = False, is_unsupported: bool = False) -> str:
    """The one-line preview of a message shown in the conversation list."""
    if is_deleted:
        return "Unsent a message"
    if text and text.strip():
        line = " ".join(text.split())
        return line if len(line) <= PREVIEW_LENGTH else line[: PREVIEW_LENGTH - 1] + "…"
    if attachment_types:
        return _ATTACHMENT_PREVIEWS.get(attachment_types[0], "Attachment")
    if is_unsupported:
        return "Unsupported message"
    return "Message"


def _message_preview(message: Message) -> str:
    types = [a.type for a in message.attachments] if not message.is_deleted else []
    return preview_text(message.text, types, is_deleted=message.is_deleted, is_unsupported=message.is_unsupported)


def _touch_conversation(conversation: Conversation, message: Message, *, new: bool, preview: str) -> None:
    """Keep the list row right: last message (by Meta's time), customer window, unread count, status."""
    at = _ms_to_datetime(message.meta_timestamp)
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = preview
        conversation.last_message_direction = message.direction
        conversation.last_message_sender_kind = message.sender_kind
    if not new:
        return
    if message.direction == "in":
        if conversation.last_customer_message_at is None or at > conversation.last_customer_message_at:
            conversation.last_customer_message_at = at
        if not message.is_deleted:
            conversation.unread_count = (conversation.unread_count or 0) + 1
            if conversation.status == "done":
                conversation.status = "open"  # the customer wrote again
    elif conversation.last_customer_message_at is None or at >= conversation.last_customer_message_at:
        # The owner answered (here or in the app): nothing before it is waiting any more.
        conversation.unread_count = 0


def _refresh_last_message(conversation: Conversation, message: Message) -> None:
    """After an edit, unsend or merge: the list preview follows if this is the newest message."""
    if conversation.last_message_at is not None and _ms_to_datetime(message.meta_timestamp) >= conversation.last_message_at:
        conversation.last_message_preview = _message_preview(message)
        conversation.last_message_direction = message.direction
        conversation.last_message_sender_kind = message.sender_kind


def _has_evidence(message: Message, attachments: tuple[AttachmentData, ...]) -> bool:
    return any(a.type in POST_ATTACHMENT_TYPES for a in attachments) or referral_is_evidence(message.referral)


def _fill(outcome: Outcome, message: Message, action: str, reason: str = "") -> Outcome:
    outcome.action = action
    outcome.reason = reason or outcome.reason
    outcome.conversation_id = message.conversation_id
    outcome.mid = message.mid
    outcome.direction = message.direction
    outcome.sender_kind = message.sender_kind
    outcome.message_id = message.id
    return outcome


# --- Many new customer messages at once ---------------------------------------------

_CONVERSATION_FIELDS = ("id", "account_id", "customer_igsid", "last_message_at", "last_message_preview",
                        "last_message_direction", "last_message_sender_kind", "last_customer_message_at",
                        "unread_count", "status", "last_ad_id", "last_ad_title")


def is_bulk_candidate(event: Event) -> bool:
    """A plain new message from a customer: the bulk of any batch Meta sends."""
    return (isinstance(event, MessageEvent) and not event.is_echo and not event.is_deleted and not event.standby
            and not event.is_self and event.sender_id is not None and event.sender_id != event.recipient_id)


def apply_messages_in_bulk(events: list[MessageEvent], *,
                           before_commit: Callable[[list[Outcome]], None] | None = None) -> list[Outcome] | None:
    """Apply a run of customer messages in one transaction with a handful of statements.

    The same rules as one by one (idempotent on mid, one conversation per customer, the
    same list-row updates and follow-ups), in set-based SQL. Returns None, having written
    nothing, when the run needs the one-by-one path (an account we do not have, a sender
    that is an account); raises when the database refuses (the caller then applies the
    events one by one, so one bad event still fails alone).
    """
    accounts: dict[str, tuple[int, str]] = {}
    plan = []
    for event in events:
        business = event.entry_id or event.recipient_id
        if business not in accounts:
            found = _lookup_account(business) if business else None
            if found is None or found[1] == "disabled":
                return None
            accounts[business] = (found[0], business)
        account_id, account_ig = accounts[business]
        if event.sender_id == account_ig or event.sender_id in accounts:
            return None
        plan.append((event, account_id, account_ig, event.sender_id))
    try:
        outcomes = _bulk(plan)
        if before_commit is not None:
            before_commit(outcomes)
        _relax_commit_durability()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return outcomes


def _bulk(plan: list[tuple[MessageEvent, int, str, str]]) -> list[Outcome]:
    now = utcnow()
    dialect = db.session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Conversation.__table__
    # Conversations: create the missing ones in a fixed order (concurrent runs wait, never deadlock),
    # then lock them all in id order.
    keys = sorted({(account_id, customer) for _, account_id, _, customer in plan})
    # executemany: SQLAlchemy sends multi-row VALUES from one cached statement.
    created = {(r.account_id, r.customer_igsid) for r in db.session.execute(
        builder(table).on_conflict_do_nothing(index_elements=["account_id", "customer_igsid"])
        .returning(table.c.account_id, table.c.customer_igsid),
        [{"account_id": a, "customer_igsid": c, "unread_count": 0, "status": "open", "created_at": now,
          "updated_at": now} for a, c in keys],
    ).all()}
    rows = db.session.execute(
        select(*(table.c[name] for name in _CONVERSATION_FIELDS))
        .where(tuple_(table.c.account_id, table.c.customer_igsid).in_(keys))
        .order_by(table.c.id).with_for_update()
    ).all()
    conversations = {(r.account_id, r.customer_igsid): SimpleNamespace(**r._asdict()) for r in rows}
    before = {key: dict(vars(c)) for key, c in conversations.items()}

    values = [_message_values(event, account_id, account_ig, conversations[(account_id, customer)].id, customer,
                              direction="in", sender_kind="customer", now=now)
              for event, account_id, account_ig, customer in plan]
    messages_table = Message.__table__
    inserted = {(r.account_id, r.mid): r.id for r in db.session.execute(
        builder(messages_table).on_conflict_do_nothing(index_elements=["account_id", "mid"])
        .returning(messages_table.c.id, messages_table.c.account_id, messages_table.c.mid),
        values,
    ).all()}
    repeats = {(account_id, event.mid) for event, account_id, _, _ in plan} - set(inserted)
    existing = {}
    if repeats:
        existing = {(r.account_id, r.mid): r for r in db.session.execute(
            select(Message.id, Message.account_id, Message.mid, Message.conversation_id)
            .where(tuple_(Message.account_id, Message.mid).in_(sorted(repeats)))).all()}
    for key in created:
        if not any((a, c) == key and (a, e.mid) in inserted for e, a, _, c in plan):
            raise _Conflict("a conversation created for messages that were all repeats")

    attachment_rows, outcomes, seen, participants = [], [], set(), {}
    for (event, account_id, account_ig, customer), row in zip(plan, values):
        key = (account_id, event.mid)
        conversation = conversations[(account_id, customer)]
        outcome = Outcome(index=event.index, type="message", action="duplicate", account=account_ig,
                          account_id=account_id, customer_igsid=customer, mid=event.mid)
        if key in inserted and key not in seen:
            seen.add(key)
            message_id = inserted[key]
            outcome.action, outcome.message_id, outcome.conversation_id = "created", message_id, conversation.id
            outcome.direction, outcome.sender_kind = "in", "customer"
            types = [a.type for a in event.attachments]
            message = SimpleNamespace(**row, id=message_id)
            _touch_conversation(conversation, message, new=True,
                                preview=preview_text(event.text, types, is_unsupported=event.is_unsupported))
            ad_id, ad_title = referral_ad(event.referral)
            if ad_id or ad_title:
                conversation.last_ad_id = ad_id or conversation.last_ad_id
                conversation.last_ad_title = ad_title or conversation.last_ad_title
            attachment_rows += [{"account_id": account_id, "message_id": message_id, "position": i, "type": a.type,
                                 "raw": a.raw, "source_url": a.source_url, "media_id": a.media_id,
                                 "title": a.title, "created_at": now} for i, a in enumerate(event.attachments)]
            participants.setdefault(account_id, []).append(customer)
            if any(t in POST_ATTACHMENT_TYPES for t in types) or referral_is_evidence(event.referral):
                products.note_evidence(message_id)
            publish_after_commit(account_id, "message.created", conversation_id=conversation.id,
                                          message_id=message_id)
        else:
            found = existing.get(key)
            outcome.reason = "mid already stored"
            if found is not None:
                outcome.message_id, outcome.conversation_id = found.id, found.conversation_id
            elif key in inserted:  # the same mid twice in one delivery
                outcome.message_id, outcome.conversation_id = inserted[key], conversation.id
            outcome.direction, outcome.sender_kind = "in", "customer"
        outcomes.append(outcome)
    for account_id, customers in participants.items():  # one identity query per account, not per message
        identities.note_participants(account_id, customers)
    if attachment_rows:
        attachments = Attachment.__table__
        ids = db.session.scalars(insert(attachments).returning(attachments.c.id), attachment_rows).all()
        media.note_attachments(ids)
    changed = []
    for key, conversation in conversations.items():
        after = vars(conversation)
        delta = {k: v for k, v in after.items() if before[key][k] != v}
        if delta:
            changed.append({"_id": conversation.id, **{k: after[k] for k in _CONVERSATION_FIELDS[3:]},
                            "updated_at": now})
            publish_after_commit(conversation.account_id, "conversation.updated",
                                          conversation_id=conversation.id)
    if changed:
        columns = (*_CONVERSATION_FIELDS[3:], "updated_at")
        db.session.execute(
            update(table).where(table.c.id == bindparam("_id"))
            .values({name: bindparam(f"v_{name}") for name in columns}),
            [{"_id": row["_id"], **{f"v_{name}": row[name] for name in columns}} for row in changed],
        )
    return outcomes


# --- Messages, echoes and unsends -------------------------------------------------

def _postback_as_message(event: PostbackEvent) -> MessageEvent:
    return MessageEvent(
        index=event.index, entry_id=event.entry_id, sender_id=event.sender_id, recipient_id=event.recipient_id,
        timestamp=event.timestamp, standby=event.standby, mid=event.mid, text=event.title,
        postback_payload=event.payload,
    )


def _apply_message(event: MessageEvent, account_id: int, account_ig: str, customer: str | None,
                   outcome: Outcome, *, insert_first: bool = False) -> Outcome:
    outcome.mid = event.mid
    echo = event.is_echo or event.sender_id == account_ig
    # A customer's new message is the common case: insert it straight away (a repeat hits the
    # unique constraint, rolls back and comes here again with insert_first False).
    if insert_first and not echo and not event.is_deleted and customer is not None:
        return _apply_new_customer_message(event, account_id, account_ig, customer, outcome)
    existing = _message_by_mid(account_id, event.mid)
    if event.is_deleted:
        return _apply_unsend(event, existing, account_id, customer, echo, outcome)
    if existing is not None:
        return _existing_message(event, existing, echo, outcome)
    if customer is None:
        outcome.reason = "no customer id in the message"
        return outcome

    conversation, _ = _conversation(account_id, customer, create=True)
    outcome.conversation_id = conversation.id
    if echo:
        claimed = _claim_pending(conversation.id, event)
        if claimed is not None:
            _touch_conversation(conversation, claimed, new=False, preview=_message_preview(claimed))
            publish_after_commit(account_id, "message.updated", conversation_id=conversation.id,
                                          message_id=claimed.id)
            publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
            return _fill(outcome, claimed, "claimed", "echo matched a pending send by its content")

    message = _create_message(event, account_id, account_ig, conversation, customer,
                              direction="out" if echo else "in",
                              sender_kind="instagram_app" if echo else "customer")
    reason = "sent from the Instagram app" if echo else ""
    if event.from_edit:
        reason = "message_edit with num_edit 0 for a new mid"
    return _fill(outcome, message, "created", reason)


def _message_values(event: MessageEvent, account_id: int, account_ig: str, conversation_id: int, customer: str, *,
                    direction: str, sender_kind: str, now: datetime, edit_count: int = 0,
                    is_deleted: bool = False) -> dict[str, Any]:
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


def _create_message(event: MessageEvent, account_id: int, account_ig: str, conversation: Conversation,
                    customer: str, *, direction: str, sender_kind: str, edit_count: int = 0,
                    is_deleted: bool = False) -> Message:
    """Insert a message with its attachments and register every follow-up."""
    now = utcnow()
    values = _message_values(event, account_id, account_ig, conversation.id, customer, direction=direction,
                             sender_kind=sender_kind, now=now, edit_count=edit_count, is_deleted=is_deleted)
    message = _insert(Message, values, ["account_id", "mid"])
    if message is None:  # a concurrent delivery of the same mid won; start over and find it
        raise _Conflict(f"message {event.mid} inserted concurrently")
    attachments = [] if is_deleted else [
        Attachment(account_id=account_id, message_id=message.id, position=i, type=a.type, raw=a.raw,
                   source_url=a.source_url, media_id=a.media_id, title=a.title, created_at=now)
        for i, a in enumerate(event.attachments)
    ]
    if attachments:
        db.session.add_all(attachments)
        db.session.flush()
        media.note_attachments([a.id for a in attachments])
    types = [a.type for a in event.attachments] if not is_deleted else []
    preview = preview_text(message.text, types, is_deleted=is_deleted, is_unsupported=event.is_unsupported)
    _touch_conversation(conversation, message, new=True, preview=preview)
    ad_id, ad_title = referral_ad(event.referral)
    if ad_id or ad_title:
        conversation.last_ad_id = ad_id or conversation.last_ad_id
        conversation.last_ad_title = ad_title or conversation.last_ad_title
    identities.note_participant(account_id, customer)
    if not is_deleted and _has_evidence(message, event.attachments):
        products.note_evidence(message.id)
    publish_after_commit(account_id, "message.created", conversation_id=conversation.id,
                                  message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
    return message


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(name: str):
    """Statements of the hot path, built once per dialect so they compile once."""
    dialect = db.session.get_bind().dialect.name
    key = (dialect, name)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = _build_statement(dialect, name)
    return _STATEMENTS[key]


def _build_statement(dialect: str, name: str):
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    c = Conversation.__table__.c
    if name == "touch":
        # What _touch_conversation does for a new customer message, as one UPDATE (SET sees the old row).
        at = bindparam("b_at", type_=c.last_message_at.type)
        newest = or_(c.last_message_at.is_(None), c.last_message_at <= at)
        return (update(Conversation.__table__)
                .where(c.account_id == bindparam("b_account_id"), c.customer_igsid == bindparam("b_customer"))
                .values(last_message_at=case((newest, at), else_=c.last_message_at),
                        last_message_preview=case((newest, bindparam("b_preview")), else_=c.last_message_preview),
                        last_message_direction=case((newest, "in"), else_=c.last_message_direction),
                        last_message_sender_kind=case((newest, "customer"), else_=c.last_message_sender_kind),
                        last_customer_message_at=case(
                            (or_(c.last_customer_message_at.is_(None), c.last_customer_message_at < at), at),
                            else_=c.last_customer_message_at),
                        unread_count=c.unread_count + 1, status="open",
                        last_ad_id=func.coalesce(bindparam("b_ad_id", type_=c.last_ad_id.type), c.last_ad_id),
                        last_ad_title=func.coalesce(bindparam("b_ad_title", type_=c.last_ad_title.type),
                                                    c.last_ad_title),
                        updated_at=bindparam("b_now", type_=c.updated_at.type))
                .returning(c.id))
    if name == "new_conversation":
        # VALUES come from the parameters' keys (always the same set, so it compiles once).
        return (builder(Conversation.__table__)
                .on_conflict_do_nothing(index_elements=["account_id", "customer_igsid"])
                .returning(c.id))
    if name == "message":
        return (builder(Message.__table__)
                .on_conflict_do_nothing(index_elements=["account_id", "mid"]).returning(Message.__table__.c.id))
    raise KeyError(name)


_MESSAGE_COLUMNS = None


def _apply_new_customer_message(event: MessageEvent, account_id: int, account_ig: str, customer: str,
                                outcome: Outcome) -> Outcome:
    """The common case in few statements: touch (or create) the conversation, insert the message.

    A repeat of a stored mid, or a conversation another delivery is creating at this very
    moment, raises _Conflict: the event is applied again on the general path.
    """
    global _MESSAGE_COLUMNS
    now = utcnow()
    types = [a.type for a in event.attachments]
    preview = preview_text(event.text, types, is_unsupported=event.is_unsupported)
    ad_id, ad_title = referral_ad(event.referral)
    at = _ms_to_datetime(event.timestamp)
    conversation_id = db.session.execute(_statement("touch"), {
        "b_account_id": account_id, "b_customer": customer, "b_at": at, "b_preview": preview, "b_ad_id": ad_id,
        "b_ad_title": ad_title, "b_now": now}).scalar()
    if conversation_id is None:
        conversation_id = db.session.execute(_statement("new_conversation"), {
            "account_id": account_id, "customer_igsid": customer, "last_message_at": at,
            "last_message_preview": preview, "last_message_direction": "in", "last_message_sender_kind": "customer",
            "last_customer_message_at": at, "unread_count": 1, "status": "open", "last_ad_id": ad_id,
            "last_ad_title": ad_title, "created_at": now, "updated_at": now}).scalar()
        if conversation_id is None:
            raise _Conflict("conversation created concurrently")
    if _MESSAGE_COLUMNS is None:
        _MESSAGE_COLUMNS = [col.name for col in Message.__table__.columns if col.name != "id"]
    values = _message_values(event, account_id, account_ig, conversation_id, customer, direction="in",
                             sender_kind="customer", now=now)
    params = {col: values.get(col) for col in _MESSAGE_COLUMNS}
    message_id = db.session.execute(_statement("message"), params).scalar()
    if message_id is None:
        raise _Conflict(f"message {event.mid} already stored")
    if event.attachments:
        attachments = Attachment.__table__
        ids = db.session.scalars(insert(attachments).values([
            {"account_id": account_id, "message_id": message_id, "position": i, "type": a.type, "raw": a.raw,
             "source_url": a.source_url, "media_id": a.media_id, "title": a.title, "created_at": now}
            for i, a in enumerate(event.attachments)]).returning(attachments.c.id)).all()
        media.note_attachments(list(ids))
    identities.note_participant(account_id, customer)
    if any(t in POST_ATTACHMENT_TYPES for t in types) or referral_is_evidence(event.referral):
        products.note_evidence(message_id)
    publish_after_commit(account_id, "message.created", conversation_id=conversation_id,
                                  message_id=message_id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id)
    outcome.action, outcome.conversation_id, outcome.message_id = "created", conversation_id, message_id
    outcome.direction, outcome.sender_kind = "in", "customer"
    return outcome


def _existing_message(event: MessageEvent, message: Message, echo: bool, outcome: Outcome) -> Outcome:
    """A mid we hold: our send confirmed by its echo, or a repeat."""
    if echo and message.direction == "out" and message.sender_kind in OUR_SENDS:
        changed = False
        if message.status in ("pending", "failed"):
            message.status = "sent"
            message.error_code = message.error_message = None
            message.sent_at = message.sent_at or utcnow()
            changed = True
        if message.meta_timestamp != event.timestamp:
            message.meta_timestamp = event.timestamp  # Meta's time orders the thread
            changed = True
        if changed:
            conversation = _lock_conversation(message.conversation_id)
            _touch_conversation(conversation, message, new=False, preview=_message_preview(message))
            publish_after_commit(message.account_id, "message.updated",
                                          conversation_id=message.conversation_id, message_id=message.id)
        return _fill(outcome, message, "confirmed", "echo of our send")
    return _fill(outcome, message, "duplicate", "mid already stored")


def _content_key(text: str | None, attachment_types: list[str] | tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    return " ".join((text or "").split()), tuple(sorted(attachment_types))


def _claim_pending(conversation_id: int, event: MessageEvent) -> Message | None:
    """Give the echo's mid to ONE of our pending sends with the same content (oldest first)."""
    window = current_app.config.get("ECHO_CLAIM_WINDOW_SECONDS", 900)
    since = utcnow() - timedelta(seconds=window)
    rows = db.session.execute(
        select(Message.id, Message.text)
        .where(Message.conversation_id == conversation_id, Message.direction == "out", Message.mid.is_(None),
               Message.status == "pending", Message.created_at >= since)
        .order_by(Message.id).limit(50)
    ).all()
    if not rows:
        return None
    wanted = _content_key(event.text, [a.type for a in event.attachments])
    types: dict[int, list[str]] = {}
    for message_id, kind in db.session.execute(
        select(Attachment.message_id, Attachment.type).where(Attachment.message_id.in_([r.id for r in rows]))
    ):
        types.setdefault(message_id, []).append(kind)
    now = utcnow()
    for row in rows:
        if _content_key(row.text, types.get(row.id, [])) != wanted:
            continue
        # Atomic: of two echoes racing for one row, exactly one sees mid IS NULL.
        claimed = db.session.execute(
            update(Message).where(Message.id == row.id, Message.mid.is_(None))
            .values(mid=event.mid, status="sent", sent_at=func.coalesce(Message.sent_at, now),
                    meta_timestamp=event.timestamp, error_code=None, error_message=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed == 1:
            return db.session.scalars(select(Message).where(Message.id == row.id)
                                      .execution_options(populate_existing=True)).one()
    return None


def _apply_unsend(event: MessageEvent, message: Message | None, account_id: int, customer: str | None,
                  echo: bool, outcome: Outcome) -> Outcome:
    """Unsend: the row stays as a tombstone without its text or media; one that arrives first leaves one."""
    if message is not None:
        if message.is_deleted:
            return _fill(outcome, message, "duplicate", "already unsent")
        conversation = _lock_conversation(message.conversation_id)
        _tombstone(message)
        _refresh_last_message(conversation, message)
        publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                                      message_id=message.id)
        publish_after_commit(account_id, "conversation.updated", conversation_id=message.conversation_id)
        return _fill(outcome, message, "deleted")
    if customer is None:
        outcome.reason = "unsend of an unknown message without a customer id"
        return outcome
    # The unsend overtook its message: keep a tombstone so the message never shows up later.
    conversation, _ = _conversation(account_id, customer, create=True)
    message = _create_message(event, account_id, outcome.account or "", conversation, customer,
                              direction="out" if echo else "in",
                              sender_kind="instagram_app" if echo else "customer", is_deleted=True)
    return _fill(outcome, message, "deleted", "unsend arrived before its message")


def _tombstone(message: Message) -> None:
    message.is_deleted = True
    message.deleted_at = utcnow()
    message.text = None
    message.previous_texts = None  # earlier versions of the text are the same words
    message.quick_reply_payload = None
    # The media goes with the message; the row stays so the thread shows "unsent".
    for attachment in list(message.attachments):
        db.session.delete(attachment)
    message.attachments = []


# --- Edits --------------------------------------------------------------------------

def _apply_edit(event: EditEvent, account_id: int, account_ig: str, customer: str | None,
                outcome: Outcome) -> Outcome:
    outcome.mid = event.mid
    message = _message_by_mid(account_id, event.mid)
    if message is None:
        if customer is None:
            outcome.reason = "edit of an unknown message without a sender"
            return outcome
        # num_edit 0 for an unknown mid is a new message (reference 2.9); a later edit that
        # overtook its message is stored with its new text so nothing is lost.
        as_message = MessageEvent(
            index=event.index, entry_id=event.entry_id, sender_id=event.sender_id,
            recipient_id=event.recipient_id, timestamp=event.timestamp, mid=event.mid, text=event.text,
            attachments=event.attachments, from_edit=True,
        )
        if not event.num_edit:
            return _apply_message(as_message, account_id, account_ig, customer, outcome)
        echo = event.sender_id == account_ig
        conversation, _ = _conversation(account_id, customer, create=True)
        message = _create_message(as_message, account_id, account_ig, conversation, customer,
                                  direction="out" if echo else "in",
                                  sender_kind="instagram_app" if echo else "customer",
                                  edit_count=event.num_edit)
        return _fill(outcome, message, "created", "edit arrived before its message; stored with the new text")
    if message.is_deleted:
        return _fill(outcome, message, "ignored", "edit of an unsent message")
    if event.num_edit is not None and event.num_edit <= message.edit_count:
        return _fill(outcome, message, "duplicate", f"edit {event.num_edit} already applied")
    if event.text == message.text:
        return _fill(outcome, message, "duplicate", "same text")
    conversation = _lock_conversation(message.conversation_id)
    message.previous_texts = [*(message.previous_texts or []), message.text or ""]
    message.text = event.text
    message.edit_count = event.num_edit if event.num_edit is not None else message.edit_count + 1
    message.edited_at = utcnow()
    _refresh_last_message(conversation, message)
    publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                                  message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=message.conversation_id)
    return _fill(outcome, message, "updated", f"edited ({message.edit_count})")


# --- Reactions -----------------------------------------------------------------------

def _apply_reaction(event: ReactionEvent, account_id: int, outcome: Outcome) -> Outcome:
    outcome.mid = event.mid
    reactor = event.sender_id
    message = _message_by_mid(account_id, event.mid)
    if message is None:
        outcome.reason = "reaction to an unknown message"
        return outcome
    outcome.conversation_id = message.conversation_id
    outcome.message_id = message.id
    if reactor is None:
        outcome.reason = "reaction without a sender"
        return outcome
    existing = db.session.scalars(
        select(Reaction).where(Reaction.message_id == message.id, Reaction.reactor_igsid == reactor)
    ).first()
    if existing is not None and (existing.meta_timestamp or 0) > event.timestamp:
        outcome.action = "duplicate"
        outcome.reason = "older than the reaction we have"
        return outcome
    if event.action == "unreact":
        if existing is None:
            outcome.action = "duplicate"
            outcome.reason = "no reaction to remove"
            return outcome
        db.session.delete(existing)
        reason = "reaction removed"
    else:
        if existing is not None and (existing.reaction, existing.emoji) == (event.reaction, event.emoji):
            outcome.action = "duplicate"
            outcome.reason = "same reaction"
            return outcome
        if existing is None:
            db.session.add(Reaction(account_id=account_id, message_id=message.id, reactor_igsid=reactor,
                                    reaction=event.reaction, emoji=event.emoji, meta_timestamp=event.timestamp,
                                    created_at=utcnow()))
        else:
            existing.reaction, existing.emoji, existing.meta_timestamp = event.reaction, event.emoji, event.timestamp
        reason = f"reacted {event.emoji or event.reaction or ''}".strip()
    publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                                  message_id=message.id)
    outcome.action = "updated"
    outcome.reason = reason
    return outcome


# --- Seen ----------------------------------------------------------------------------

def _apply_seen(event: SeenEvent, account_id: int, account_ig: str, customer: str | None,
                outcome: Outcome) -> Outcome:
    outcome.mid = event.mid
    target = _message_by_mid(account_id, event.mid) if event.mid else None
    if target is not None:
        conversation = _lock_conversation(target.conversation_id)
        limit = target.meta_timestamp
    elif customer is not None:
        conversation, _ = _conversation(account_id, customer, create=False)
        # The seen message has not reached us yet: everything sent before the receipt was seen.
        limit = event.watermark or event.timestamp
    else:
        conversation = None
    if conversation is None:
        outcome.reason = "seen receipt for a conversation we do not have"
        return outcome
    outcome.conversation_id = conversation.id
    outcome.customer_igsid = conversation.customer_igsid
    if event.sender_id == account_ig:
        # The owner read the thread in the Instagram app.
        if conversation.unread_count:
            conversation.unread_count = 0
            publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
            outcome.action, outcome.reason = "updated", "read by the account"
        else:
            outcome.action, outcome.reason = "duplicate", "already read"
        return outcome
    now = utcnow()
    seen_ids = list(db.session.scalars(
        update(Message)
        .where(Message.conversation_id == conversation.id, Message.direction == "out",
               Message.status == "sent", Message.meta_timestamp <= limit)
        .values(status="seen", seen_at=now, updated_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ))
    if not seen_ids:
        outcome.action, outcome.reason = "duplicate", "nothing new was seen"
        return outcome
    for message_id in seen_ids[-20:]:  # the thread refetches on reconnect; the newest matter
        publish_after_commit(account_id, "message.updated", conversation_id=conversation.id,
                                      message_id=message_id)
    outcome.action = "updated"
    outcome.reason = f"{len(seen_ids)} outgoing message(s) seen"
    return outcome


# --- Referrals ------------------------------------------------------------------------

def _apply_referral(event: ReferralEvent, account_id: int, customer: str | None, outcome: Outcome) -> Outcome:
    if customer is None:
        outcome.reason = "referral without a sender"
        return outcome
    conversation, _ = _conversation(account_id, customer, create=False)
    if conversation is None:
        # The event is kept with its delivery; a message that follows carries its own referral.
        outcome.reason = "referral for a conversation we do not have"
        return outcome
    outcome.conversation_id = conversation.id
    ad_id, ad_title = referral_ad(event.referral)
    ref = event.referral.get("ref")
    label = f"ref {ref[:40]!r}" if isinstance(ref, str) and ref else "referral"
    if not ad_id and not ad_title:
        outcome.action, outcome.reason = "duplicate", f"{label}: nothing to record on the conversation"
        return outcome
    if (conversation.last_ad_id, conversation.last_ad_title) == (ad_id or conversation.last_ad_id,
                                                                 ad_title or conversation.last_ad_title):
        outcome.action, outcome.reason = "duplicate", "ad already recorded"
        return outcome
    conversation.last_ad_id = ad_id or conversation.last_ad_id
    conversation.last_ad_title = ad_title or conversation.last_ad_title
    identities.note_participant(account_id, customer)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
    outcome.action, outcome.reason = "updated", f"came from ad {ad_id or ad_title}"
    return outcome


# --- The Send API answered ---------------------------------------------------------------

def reconcile_sent(message_id: int, mid: str) -> Message | None:
    """Record the mid the Send API returned for our pending message (committed).

    The echo may have got there first: when it claimed our row the mids already agree; when
    it created its own row with this mid (its content did not match), that row is merged
    into ours so exactly one remains, ours. When an echo of an identical message gave our
    row a different mid, the two mids are swapped between the rows, so every real message
    keeps one row. Returns our message, or None when it no longer exists.
    """
    for attempt in range(_RETRIES):
        try:
            message = _reconcile(message_id, mid)
            db.session.commit()
            return message
        except (IntegrityError, _Conflict):
            db.session.rollback()
            if attempt == _RETRIES - 1:
                raise
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _reconcile(message_id: int, mid: str) -> Message | None:
    found = db.session.execute(select(Message.conversation_id).where(Message.id == message_id)).first()
    if found is None:
        return None
    conversation = _lock_conversation(found.conversation_id)
    ours = db.session.scalars(select(Message).where(Message.id == message_id)
                              .execution_options(populate_existing=True)).one()
    now = utcnow()
    changed_ids = {ours.id}
    removed_id = None
    if ours.mid != mid:
        holder = _message_by_mid(ours.account_id, mid)
        previous_mid, previous_ts = ours.mid, ours.meta_timestamp
        if holder is None:
            ours.mid = mid
            db.session.flush()
            if previous_mid is not None:
                # An echo of another message gave us its mid; that message still needs a row.
                _rehome_mid(ours, previous_mid, previous_ts)
        elif holder.sender_kind in OUR_SENDS:
            # An echo gave our mid to another pending send with the same content: swap.
            _swap_mids(ours, holder, previous_mid, previous_ts)
            if previous_mid is None:
                holder.status = "pending"
            changed_ids.add(holder.id)
        elif previous_mid is None:
            # The echo came first and did not match our content: its row becomes ours.
            _merge_into(ours, holder)
            removed_id = holder.id
        else:
            _swap_mids(ours, holder, previous_mid, previous_ts)
            changed_ids.add(holder.id)
    if ours.status in ("pending", "failed"):
        ours.status = "sent"
        ours.error_code = ours.error_message = None
    ours.sent_at = ours.sent_at or now
    _refresh_last_message(conversation, ours)
    for changed in sorted(changed_ids):
        publish_after_commit(ours.account_id, "message.updated", conversation_id=conversation.id,
                                      message_id=changed)
    if removed_id is not None:
        publish_after_commit(ours.account_id, "conversation.updated", conversation_id=conversation.id,
                                      removed_message_id=removed_id)
    return ours


def _swap_mids(ours: Message, holder: Message, previous_mid: str | None, previous_ts: int) -> None:
    """ours takes holder's mid (and Meta's time for it); holder takes ours' previous mid."""
    holder_mid, holder_ts = holder.mid, holder.meta_timestamp
    holder.mid = f"~swap:{holder.id}:{time.monotonic_ns()}"  # the unique constraint holds at every step
    db.session.flush()
    ours.mid, ours.meta_timestamp = holder_mid, holder_ts
    db.session.flush()
    holder.mid = previous_mid
    if previous_mid is not None:
        holder.meta_timestamp = previous_ts
    db.session.flush()
    _move_children(holder, ours)


def _merge_into(ours: Message, holder: Message) -> None:
    """The echo row for our mid becomes ours: its Meta state moves over, then it goes."""
    mid, meta_ts = holder.mid, holder.meta_timestamp
    state = (holder.is_deleted, holder.deleted_at, holder.text, holder.edit_count, holder.previous_texts,
             holder.edited_at, holder.status, holder.seen_at)
    ours_has_attachments = db.session.scalar(select(func.count()).where(Attachment.message_id == ours.id)) > 0
    _move_children(holder, ours, attachments=not ours_has_attachments and not holder.is_deleted)
    db.session.delete(holder)
    db.session.flush()
    ours.mid, ours.meta_timestamp = mid, meta_ts
    is_deleted, deleted_at, text, edit_count, previous_texts, edited_at, status, seen_at = state
    if is_deleted:
        _tombstone(ours)
        ours.deleted_at = deleted_at
    elif edit_count > ours.edit_count:
        ours.previous_texts = [*(ours.previous_texts or []), *(previous_texts or [])] or None
        ours.text, ours.edit_count, ours.edited_at = text, edit_count, edited_at
    if status == "seen":
        ours.status, ours.seen_at = "seen", seen_at


def _move_children(source: Message, target: Message, *, attachments: bool = False) -> None:
    """Reactions (and optionally attachments) of source now belong to target."""
    db.session.flush()
    taken = select(Reaction.reactor_igsid).where(Reaction.message_id == target.id).scalar_subquery()
    db.session.execute(delete(Reaction).where(Reaction.message_id == source.id, Reaction.reactor_igsid.in_(taken))
                       .execution_options(synchronize_session=False))
    db.session.execute(update(Reaction).where(Reaction.message_id == source.id).values(message_id=target.id)
                       .execution_options(synchronize_session=False))
    if attachments:
        db.session.execute(update(Attachment).where(Attachment.message_id == source.id)
                           .values(message_id=target.id).execution_options(synchronize_session=False))
    for message in (source, target):
        db.session.expire(message, ["reactions", "attachments"])


def _rehome_mid(ours: Message, mid: str, meta_ts: int) -> None:
    """A mid an echo gave us belongs to another message: another pending twin, else the owner's app."""
    event = MessageEvent(index=0, entry_id=None, sender_id=None, recipient_id=None, timestamp=meta_ts, mid=mid,
                         text=ours.text, attachments=tuple(AttachmentData(type=a.type, raw=a.raw or {})
                                                           for a in ours.attachments))
    if _claim_pending(ours.conversation_id, event) is not None:
        return
    conversation = _lock_conversation(ours.conversation_id)
    now = utcnow()
    copy = _insert(Message, {
        "account_id": ours.account_id, "conversation_id": ours.conversation_id, "mid": mid, "direction": "out",
        "sender_kind": "instagram_app", "sender_igsid": ours.sender_igsid, "text": ours.text, "status": "sent",
        "sent_at": now, "meta_timestamp": meta_ts, "created_at": now, "updated_at": now, "send_attempts": 0,
        "is_unsupported": False, "is_deleted": False, "edit_count": 0,
    }, ["account_id", "mid"])
    if copy is None:
        raise _Conflict(f"message {mid} inserted concurrently")
    _touch_conversation(conversation, copy, new=False, preview=_message_preview(copy))
    publish_after_commit(ours.account_id, "message.created", conversation_id=ours.conversation_id,
                                  message_id=copy.id)
