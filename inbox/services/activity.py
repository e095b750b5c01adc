"""The activity line of a conversation: one `conversation_events` row per thing staff (or the
inbox) did to it: assigned, unassigned, done, reopened, product set, label added or removed,
a note, a private reply to a comment. Shown in the thread as a quiet line between messages,
pushed live (`conversation.event`).

`record_event` is called inside the writer's transaction; the push goes out after its commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import ConversationEvent, Note, StaffUser, ms_to_datetime
from ..models.team import EVENT_KINDS


def record_event(account_id: int, conversation_id: int, kind: str, *, actor_user_id: int | None = None,
                 target_user_id: int | None = None, note_id: int | None = None,
                 detail: str | None = None) -> ConversationEvent:
    """Add one line to a conversation's activity (in the caller's transaction; pushed after its commit)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown conversation event {kind!r}")
    event = ConversationEvent(account_id=account_id, conversation_id=conversation_id, kind=kind,
                              actor_user_id=actor_user_id, target_user_id=target_user_id, note_id=note_id,
                              detail=(detail or None) and detail[:255])
    db.session.add(event)
    db.session.flush()
    publish_after_commit(account_id, "conversation.event", conversation_id=conversation_id, event_id=event.id)
    return event


@dataclass
class TimelineEvent:
    """An activity line or a note as the thread shows it."""

    event: ConversationEvent
    actor: StaffUser | None
    target: StaffUser | None
    note: Note | None

    @property
    def at(self) -> datetime:
        return self.event.created_at

    @property
    def is_note(self) -> bool:
        return self.event.kind == "note" and self.note is not None


def thread_events(account_id: int, conversation_id: int, since: datetime | None = None,
                  until: datetime | None = None) -> list[TimelineEvent]:
    """A conversation's activity, oldest first, in [since, until) when the thread shows a stretch of it."""
    query = (select(ConversationEvent).where(ConversationEvent.account_id == account_id,
                                             ConversationEvent.conversation_id == conversation_id)
             .order_by(ConversationEvent.created_at, ConversationEvent.id))
    if since is not None:
        query = query.where(ConversationEvent.created_at >= since)
    if until is not None:
        query = query.where(ConversationEvent.created_at < until)
    return _timeline(account_id, list(db.session.scalars(query)))


def get_events(account_id: int, event_ids: set[int]) -> dict[int, TimelineEvent]:
    """Events by id (a batch of live pushes); other accounts' ids are left out."""
    if not event_ids:
        return {}
    found = list(db.session.scalars(select(ConversationEvent).where(
        ConversationEvent.account_id == account_id, ConversationEvent.id.in_(sorted(event_ids)))))
    return {item.event.id: item for item in _timeline(account_id, found)}


def _timeline(account_id: int, events: list[ConversationEvent]) -> list[TimelineEvent]:
    user_ids = {e.actor_user_id for e in events} | {e.target_user_id for e in events}
    user_ids.discard(None)
    users = {u.id: u for u in db.session.scalars(select(StaffUser).where(StaffUser.id.in_(user_ids)))} if user_ids else {}
    note_ids = {e.note_id for e in events if e.note_id}
    notes = {n.id: n for n in db.session.scalars(select(Note).where(Note.account_id == account_id,
                                                                    Note.id.in_(note_ids)))} if note_ids else {}
    return [TimelineEvent(e, users.get(e.actor_user_id), users.get(e.target_user_id), notes.get(e.note_id))
            for e in events]


def describe(item: TimelineEvent) -> str:
    """The activity line in words ("Ana assigned this to Ben")."""
    e = item.event
    # No actor: the inbox did it (a rule, round-robin), or the person was deleted since.
    who = item.actor.display_name if item.actor else ("The inbox" if e.actor_user_id is None else "Someone")
    target = item.target.display_name if item.target else "someone"
    if e.kind == "assigned":
        if item.actor is not None and item.target is not None and item.actor.id == item.target.id:
            return f"{who} took this"
        return f"{who} assigned this to {target}" + (f" ({e.detail})" if e.detail else "")
    if e.kind == "unassigned":
        return f"{who} unassigned this"
    if e.kind == "done":
        return f"{who} marked this done"
    if e.kind == "reopened":
        return f"Reopened: {e.detail}" if e.detail and item.actor is None else f"{who} reopened this"
    if e.kind == "product_set":
        return f"{who} set the product to {e.detail}" if e.detail else f"{who} cleared the product"
    if e.kind == "label_added":
        return f"{who} added the label {e.detail}"
    if e.kind == "label_removed":
        return f"{who} removed the label {e.detail}"
    if e.kind == "private_reply":
        return f"{who} replied privately to a comment" + (f": {e.detail}" if e.detail else "")
    if e.kind == "note":
        return f"{who} left a note"
    if e.kind == "sold":
        return f"{who} marked this sold" + (f": {e.detail}" if e.detail else "")
    if e.kind == "not_sold":
        return f"{who} marked this not sold" + (f": {e.detail}" if e.detail else "")
    if e.kind == "outcome_cleared":
        return f"{who} cleared the sale outcome"
    return f"{who}: {e.kind}"


def merge_timeline(messages: list, events: list[TimelineEvent]) -> list[tuple[str, object]]:
    """Messages and activity in time order: ("message", Message) and ("event", TimelineEvent)."""
    items = [(ms_to_datetime(m.meta_timestamp), 0, m.id, "message", m) for m in messages]
    items += [(ev.at, 1, ev.event.id, "event", ev) for ev in events]
    items.sort(key=lambda t: (t[0], t[1], t[2]))
    return [(kind, obj) for _, _, _, kind, obj in items]
