"""Private notes on a conversation: stored and shown to the team, never sent to Instagram.

`@name` mentions a colleague of the account (their first name, their name without spaces, or
their email before the @): they get a desktop notification and the conversation appears
under their Mentions filter. A note is also an activity line (`note`), pushed live.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Conversation, Note, NoteMention, StaffUser
from . import activity, team

MAX_NOTE_CHARS = 5000
MENTION_PATTERN = re.compile(r"(?<![\w@])@([\w][\w.\-]*)", re.UNICODE)


class NoteRefused(ValueError):
    """The note was not saved; the message says why."""


def handles(user: StaffUser) -> set[str]:
    """The @names that mention a person."""
    out = {user.email.split("@", 1)[0].lower()}
    name = (user.name or "").strip().lower()
    if name:
        out.add(name.split()[0])
        out.add("".join(name.split()))
    return {h.rstrip(".-") for h in out if h}


def mentioned(account_id: int, text: str) -> list[StaffUser]:
    """The account's members a text @mentions (each once)."""
    words = {m.group(1).lower().rstrip(".-") for m in MENTION_PATTERN.finditer(text or "")}
    if not words:
        return []
    return [m.user for m in team.members(account_id) if handles(m.user) & words]


def add_note(account_id: int, conversation_id: int, user_id: int, text: str) -> Note:
    """Save a note (committed); mentions notify, the thread and the list hear of it."""
    text = (text or "").strip()
    if not text:
        raise NoteRefused("Write something first.")
    if len(text) > MAX_NOTE_CHARS:
        raise NoteRefused(f"A note can be at most {MAX_NOTE_CHARS:,} characters.")
    conversation = db.session.scalar(select(Conversation).where(Conversation.account_id == account_id,
                                                                Conversation.id == conversation_id))
    if conversation is None:
        raise LookupError(conversation_id)
    note = Note(account_id=account_id, conversation_id=conversation_id, author_user_id=user_id, text=text)
    db.session.add(note)
    db.session.flush()
    event = activity.record_event(account_id, conversation_id, "note", actor_user_id=user_id, note_id=note.id)
    for person in mentioned(account_id, text):
        db.session.add(NoteMention(account_id=account_id, note_id=note.id, conversation_id=conversation_id,
                                   user_id=person.id))
        if person.id != user_id:
            publish_after_commit(account_id, "staff.notify", user_id=person.id, conversation_id=conversation_id,
                                 event_id=event.id, kind="mention")
    db.session.commit()
    return note


def mention_handle(user: StaffUser) -> str:
    """What to type to mention someone (shown in the composer's hint)."""
    name = (user.name or "").strip()
    return "@" + (name.split()[0].lower() if name else user.email.split("@", 1)[0].lower())
