"""An account's labels (a name and a colour, managed by admins) and the labels on conversations.

Adding or removing one is an activity line and a `conversation.updated` push (team=1), so the
thread header and the list row follow in every browser.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Conversation, ConversationLabel, Label
from ..models.team import LABEL_COLORS
from . import activity

MAX_NAME = 40


class LabelError(ValueError):
    """Refused; the message says why."""


def labels(account_id: int) -> list[Label]:
    return list(db.session.scalars(select(Label).where(Label.account_id == account_id).order_by(Label.name)))


def get_label(account_id: int, label_id: int) -> Label | None:
    return db.session.scalar(select(Label).where(Label.account_id == account_id, Label.id == label_id))


def find_label(account_id: int, name: str) -> Label | None:
    wanted = " ".join((name or "").split()).lower()
    return next((label for label in labels(account_id) if label.name.lower() == wanted), None)


def create_label(account_id: int, name: str, color: str = "gray") -> Label:
    name = " ".join((name or "").split())
    if not name:
        raise LabelError("Give the label a name.")
    if len(name) > MAX_NAME:
        raise LabelError(f"A label's name can be at most {MAX_NAME} characters.")
    color = (color or "gray").strip().lower()
    if color not in LABEL_COLORS:
        raise LabelError("Choose one of the colours: " + ", ".join(LABEL_COLORS) + ".")
    if find_label(account_id, name) is not None:
        raise LabelError(f"There is already a label “{name}”.")
    label = Label(account_id=account_id, name=name, color=color)
    db.session.add(label)
    db.session.commit()
    return label


def update_label(account_id: int, label_id: int, *, name: str | None = None, color: str | None = None) -> Label:
    label = get_label(account_id, label_id)
    if label is None:
        raise LabelError("No such label.")
    if name is not None:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise LabelError(f"A label's name needs 1 to {MAX_NAME} characters.")
        other = find_label(account_id, name)
        if other is not None and other.id != label.id:
            raise LabelError(f"There is already a label “{name}”.")
        label.name = name
    if color is not None:
        if color not in LABEL_COLORS:
            raise LabelError("Choose one of the colours: " + ", ".join(LABEL_COLORS) + ".")
        label.color = color
    db.session.commit()
    return label


def delete_label(account_id: int, label_id: int) -> None:
    label = get_label(account_id, label_id)
    if label is None:
        raise LabelError("No such label.")
    conversation_ids = list(db.session.scalars(select(ConversationLabel.conversation_id)
                                               .where(ConversationLabel.label_id == label.id)))
    db.session.execute(delete(ConversationLabel).where(ConversationLabel.label_id == label.id))
    db.session.delete(label)
    for conversation_id in conversation_ids:
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id, team=1)
    db.session.commit()


def conversation_labels(account_id: int, conversation_ids: set[int]) -> dict[int, list[Label]]:
    """Each conversation's labels by name, in one query."""
    out: dict[int, list[Label]] = {cid: [] for cid in conversation_ids}
    if not conversation_ids:
        return out
    rows = db.session.execute(select(ConversationLabel.conversation_id, Label)
                              .join(Label, Label.id == ConversationLabel.label_id)
                              .where(ConversationLabel.account_id == account_id,
                                     ConversationLabel.conversation_id.in_(sorted(conversation_ids)))
                              .order_by(Label.name)).all()
    for conversation_id, label in rows:
        out.setdefault(conversation_id, []).append(label)
    return out


def _conversation(account_id: int, conversation_id: int) -> Conversation:
    conversation = db.session.scalar(select(Conversation).where(Conversation.account_id == account_id,
                                                                Conversation.id == conversation_id))
    if conversation is None:
        raise LookupError(conversation_id)
    return conversation


def add_label(account_id: int, conversation_id: int, label_id: int, *, actor_id: int | None) -> bool:
    """Put a label on a conversation; False when it was already there."""
    label = get_label(account_id, label_id)
    if label is None:
        raise LabelError("No such label.")
    _conversation(account_id, conversation_id)
    exists = db.session.scalar(select(ConversationLabel.id).where(ConversationLabel.conversation_id == conversation_id,
                                                                  ConversationLabel.label_id == label.id))
    if exists:
        return False
    db.session.add(ConversationLabel(account_id=account_id, conversation_id=conversation_id, label_id=label.id))
    activity.record_event(account_id, conversation_id, "label_added", actor_user_id=actor_id, detail=label.name)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id, team=1)
    db.session.commit()
    return True


def remove_label(account_id: int, conversation_id: int, label_id: int, *, actor_id: int | None) -> bool:
    label = get_label(account_id, label_id)
    if label is None:
        raise LabelError("No such label.")
    _conversation(account_id, conversation_id)
    removed = db.session.execute(delete(ConversationLabel).where(
        ConversationLabel.conversation_id == conversation_id, ConversationLabel.label_id == label.id)).rowcount
    if removed:
        activity.record_event(account_id, conversation_id, "label_removed", actor_user_id=actor_id, detail=label.name)
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id, team=1)
    db.session.commit()
    return bool(removed)
