"""Echoes of what the account sent, and the Send API's answer: one row per real message.

An echo confirms our send by its mid, else claims one of our pending sends with the same
content, else is a message the owner typed in the Instagram app (a new row, written by
`messages.write_new`). `reconcile_sent` is the other half of the race: the send job calls
it when the Send API answers, and it merges with whatever an echo already wrote.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...extensions import db
from ...live.publish import publish_after_commit
from ...models import Attachment, Message, Reaction, utcnow
from .. import conversations
from ..events import AttachmentData, MessageEvent
from ..transactions import Conflict, retry_on_conflict
from . import messages
from .messages import NewMessage
from .outcomes import Outcome

# Sender kinds whose rows we wrote before sending (they wait for the Send API's mid).
OUR_SENDS = ("staff", "automation")


def apply_echo(event: MessageEvent, account_id: int, account_ig: str, customer: str | None,
               outcome: Outcome) -> Outcome:
    """A message the account sent: our send confirmed or claimed, else one typed in the Instagram app."""
    outcome.mid = event.mid
    existing = messages.find_message(account_id, event.mid)
    if existing is not None:
        return _confirm(event, existing, outcome)
    if customer is None:
        outcome.reason = "no customer id in the message"
        return outcome
    conversation = conversations.lock_customer_conversation(account_id, customer)
    if conversation is not None:
        claimed = claim_pending(conversation.id, event)
        if claimed is not None:
            conversations.touch(conversation, claimed, new=False, preview=conversations.message_preview(claimed))
            publish_after_commit(account_id, "message.updated", conversation_id=conversation.id,
                                 message_id=claimed.id)
            publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
            return outcome.fill(claimed, "claimed", "echo matched a pending send by its content")
    written = messages.write_new(NewMessage(event, account_id, account_ig, customer, outgoing=True))
    reason = "message_edit with num_edit 0 for a new mid" if event.from_edit else "sent from the Instagram app"
    return outcome.fill(written, "created", reason)


def _confirm(event: MessageEvent, message: Message, outcome: Outcome) -> Outcome:
    """A mid we hold: our send confirmed by its echo, or a repeat."""
    if message.direction == "out" and message.sender_kind in OUR_SENDS:
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
            conversation = conversations.lock_conversation(message.conversation_id)
            conversations.touch(conversation, message, new=False, preview=conversations.message_preview(message))
            publish_after_commit(message.account_id, "message.updated",
                                 conversation_id=message.conversation_id, message_id=message.id)
        return outcome.fill(message, "confirmed", "echo of our send")
    return outcome.fill(message, "duplicate", "mid already stored")


def _content_key(text: str | None, attachment_types: list[str] | tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    return " ".join((text or "").split()), tuple(sorted(attachment_types))


def claim_pending(conversation_id: int, event: MessageEvent) -> Message | None:
    """Give the echo's mid to ONE of our pending sends with the same content (oldest first); None if none matches."""
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


# --- The Send API answered ---------------------------------------------------------------

def reconcile_sent(message_id: int, mid: str) -> Message | None:
    """Record the mid the Send API returned for our pending message (committed).

    The echo may have got there first: when it claimed our row the mids already agree; when
    it created its own row with this mid (its content did not match), that row is merged
    into ours so exactly one remains, ours. When an echo of an identical message gave our
    row a different mid, the two mids are swapped between the rows, so every real message
    keeps one row. Returns our message, or None when it no longer exists.
    """
    return retry_on_conflict(lambda: _reconcile(message_id, mid))


def _reconcile(message_id: int, mid: str) -> Message | None:
    found = db.session.execute(select(Message.conversation_id).where(Message.id == message_id)).first()
    if found is None:
        return None
    conversation = conversations.lock_conversation(found.conversation_id)
    ours = db.session.scalars(select(Message).where(Message.id == message_id)
                              .execution_options(populate_existing=True)).one()
    now = utcnow()
    changed_ids = {ours.id}
    removed_id = None
    if ours.mid != mid:
        holder = messages.find_message(ours.account_id, mid)
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
    conversations.touch(conversation, ours, new=False, preview=conversations.message_preview(ours))
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
        messages.tombstone(ours)
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
    if claim_pending(ours.conversation_id, event) is not None:
        return
    conversation = conversations.lock_conversation(ours.conversation_id)
    now = utcnow()
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    copy = db.session.scalars(builder(Message).values(
        account_id=ours.account_id, conversation_id=ours.conversation_id, mid=mid, direction="out",
        sender_kind="instagram_app", sender_igsid=ours.sender_igsid, text=ours.text, status="sent", sent_at=now,
        meta_timestamp=meta_ts, created_at=now, updated_at=now, send_attempts=0, is_unsupported=False,
        is_deleted=False, edit_count=0,
    ).on_conflict_do_nothing(index_elements=["account_id", "mid"]).returning(Message)).first()
    if copy is None:
        raise Conflict(f"message {mid} inserted concurrently")
    conversations.touch(conversation, copy, new=False, preview=conversations.message_preview(copy))
    publish_after_commit(ours.account_id, "message.created", conversation_id=ours.conversation_id,
                         message_id=copy.id)

