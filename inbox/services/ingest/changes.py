"""Events that change what we hold: unsends, edits, reactions, seen receipts and ad referrals.

Each may arrive before the message it is about. An unsend or an edit that overtakes its
message leaves the row it will find (a tombstone, or the message with its new text); a
reaction, seen receipt or referral for a message or conversation we do not have is
recorded as ignored, and the delivery keeps it for a replay.
"""

from __future__ import annotations

from sqlalchemy import select, update

from ...extensions import db
from ...live.publish import publish_after_commit
from ...models import Message, Reaction, utcnow
from .. import conversations, identities
from ..events import EditEvent, MessageEvent, ReactionEvent, ReferralEvent, SeenEvent, referral_ad
from . import echoes, messages
from .messages import NewMessage
from .outcomes import Outcome


# --- Unsends -------------------------------------------------------------------------------

def apply_unsend(event: MessageEvent, account_id: int, account_ig: str, customer: str | None, outgoing: bool,
                 outcome: Outcome) -> Outcome:
    """The row stays as a tombstone without its text or media; an unsend that arrives first leaves one."""
    outcome.mid = event.mid
    message = messages.find_message(account_id, event.mid)
    if message is not None:
        if message.is_deleted:
            return outcome.fill(message, "duplicate", "already unsent")
        conversation = conversations.lock_conversation(message.conversation_id)
        messages.tombstone(message)
        conversations.touch(conversation, message, new=False, preview=conversations.message_preview(message))
        publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                             message_id=message.id)
        publish_after_commit(account_id, "conversation.updated", conversation_id=message.conversation_id)
        return outcome.fill(message, "deleted")
    if customer is None:
        outcome.reason = "unsend of an unknown message without a customer id"
        return outcome
    # The unsend overtook its message: keep a tombstone so the message never shows up later.
    written = messages.write_new(NewMessage(event, account_id, account_ig, customer, outgoing=outgoing,
                                            is_deleted=True))
    return outcome.fill(written, "deleted", "unsend arrived before its message")


# --- Edits ---------------------------------------------------------------------------------

def apply_edit(event: EditEvent, account_id: int, account_ig: str, customer: str | None,
               outcome: Outcome) -> Outcome:
    outcome.mid = event.mid
    message = messages.find_message(account_id, event.mid)
    if message is None:
        if customer is None:
            outcome.reason = "edit of an unknown message without a sender"
            return outcome
        # num_edit 0 for an unknown mid is a new message; a later edit that overtook its
        # message is stored with its new text so nothing is lost.
        as_message = MessageEvent(
            index=event.index, entry_id=event.entry_id, sender_id=event.sender_id,
            recipient_id=event.recipient_id, timestamp=event.timestamp, mid=event.mid, text=event.text,
            attachments=event.attachments, from_edit=True,
        )
        outgoing = event.sender_id == account_ig
        if not event.num_edit:
            if outgoing:
                return echoes.apply_echo(as_message, account_id, account_ig, customer, outcome)
            written = messages.write_new(NewMessage(as_message, account_id, account_ig, customer))
            return outcome.fill(written, "created", "message_edit with num_edit 0 for a new mid")
        written = messages.write_new(NewMessage(as_message, account_id, account_ig, customer, outgoing=outgoing,
                                                edit_count=event.num_edit))
        return outcome.fill(written, "created", "edit arrived before its message; stored with the new text")
    if message.is_deleted:
        return outcome.fill(message, "ignored", "edit of an unsent message")
    if event.num_edit is not None and event.num_edit <= message.edit_count:
        return outcome.fill(message, "duplicate", f"edit {event.num_edit} already applied")
    if event.text == message.text:
        return outcome.fill(message, "duplicate", "same text")
    conversation = conversations.lock_conversation(message.conversation_id)
    message.previous_texts = [*(message.previous_texts or []), message.text or ""]
    message.text = event.text
    message.edit_count = event.num_edit if event.num_edit is not None else message.edit_count + 1
    message.edited_at = utcnow()
    conversations.touch(conversation, message, new=False, preview=conversations.message_preview(message))
    publish_after_commit(account_id, "message.updated", conversation_id=message.conversation_id,
                         message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=message.conversation_id)
    return outcome.fill(message, "updated", f"edited ({message.edit_count})")


# --- Reactions -----------------------------------------------------------------------------

def apply_reaction(event: ReactionEvent, account_id: int, outcome: Outcome) -> Outcome:
    """One reaction per (message, reactor): replaced by a newer one, removed by unreact."""
    outcome.mid = event.mid
    reactor = event.sender_id
    message = messages.find_message(account_id, event.mid)
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


# --- Seen ----------------------------------------------------------------------------------

def apply_seen(event: SeenEvent, account_id: int, account_ig: str, customer: str | None,
               outcome: Outcome) -> Outcome:
    """The customer saw our messages up to one (or a time); the owner reading in the app clears unread."""
    outcome.mid = event.mid
    target = messages.find_message(account_id, event.mid) if event.mid else None
    if target is not None:
        conversation = conversations.lock_conversation(target.conversation_id)
        limit = target.meta_timestamp
    elif customer is not None:
        conversation = conversations.lock_customer_conversation(account_id, customer)
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


# --- Referrals -----------------------------------------------------------------------------

def apply_referral(event: ReferralEvent, account_id: int, customer: str | None, outcome: Outcome) -> Outcome:
    """The customer came from an ad (or an ig.me link) into a conversation we have."""
    if customer is None:
        outcome.reason = "referral without a sender"
        return outcome
    conversation = conversations.lock_customer_conversation(account_id, customer)
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
