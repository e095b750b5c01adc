"""Saved replies: an account's canned answers with a shortcut. Typing `/` in the composer opens
a picker that filters by shortcut and text; choosing one puts its text in the composer with the
variables filled for this conversation (reply_variables: the same function automations use).
"""

from __future__ import annotations

import re

from sqlalchemy import or_, select

from ..extensions import db
from ..models import Conversation, Identity, Product, SavedReply, StaffUser
from .reply_variables import customer_values, fill_variables, unknown_variables

_SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
MAX_TEXT = 1000
PICKER_LIMIT = 8


class SavedReplyError(ValueError):
    """Refused; the message says why."""


def replies(account_id: int) -> list[SavedReply]:
    return list(db.session.scalars(select(SavedReply).where(SavedReply.account_id == account_id)
                                   .order_by(SavedReply.shortcut)))


def get_reply(account_id: int, reply_id: int) -> SavedReply | None:
    return db.session.scalar(select(SavedReply).where(SavedReply.account_id == account_id, SavedReply.id == reply_id))


def _check(account_id: int, shortcut: str, text: str, reply_id: int | None = None) -> tuple[str, str]:
    shortcut = (shortcut or "").strip().lstrip("/").lower()
    text = (text or "").strip()
    if not _SHORTCUT.match(shortcut):
        raise SavedReplyError("A shortcut is 1 to 40 letters, digits, - or _ (for example: price).")
    if not text:
        raise SavedReplyError("Write the reply's text.")
    if len(text.encode()) > MAX_TEXT:
        raise SavedReplyError("A saved reply can be at most 1,000 bytes (Instagram's limit for a message).")
    unknown = unknown_variables(text)
    if unknown:
        raise SavedReplyError("Unknown variable " + ", ".join("{" + u + "}" for u in unknown)
                              + ": use {first_name}, {username}, {product}, {price} or {agent}.")
    other = db.session.scalar(select(SavedReply.id).where(SavedReply.account_id == account_id,
                                                          SavedReply.shortcut == shortcut))
    if other is not None and other != reply_id:
        raise SavedReplyError(f"The shortcut /{shortcut} is taken.")
    return shortcut, text


def create_reply(account_id: int, shortcut: str, text: str, *, user_id: int | None = None) -> SavedReply:
    shortcut, text = _check(account_id, shortcut, text)
    reply = SavedReply(account_id=account_id, shortcut=shortcut, text=text, created_by_user_id=user_id)
    db.session.add(reply)
    db.session.commit()
    return reply


def update_reply(account_id: int, reply_id: int, shortcut: str, text: str) -> SavedReply:
    reply = get_reply(account_id, reply_id)
    if reply is None:
        raise SavedReplyError("No such saved reply.")
    reply.shortcut, reply.text = _check(account_id, shortcut, text, reply.id)
    db.session.commit()
    return reply


def delete_reply(account_id: int, reply_id: int) -> None:
    reply = get_reply(account_id, reply_id)
    if reply is None:
        raise SavedReplyError("No such saved reply.")
    db.session.delete(reply)
    db.session.commit()


def search(account_id: int, q: str, limit: int = PICKER_LIMIT) -> list[SavedReply]:
    """The picker: shortcuts starting with q first, then any whose shortcut or text contains it."""
    q = (q or "").strip().lstrip("/").lower()[:60]
    query = select(SavedReply).where(SavedReply.account_id == account_id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(SavedReply.shortcut.ilike(pattern, escape="\\"),
                                SavedReply.text.ilike(pattern, escape="\\")))
    found = list(db.session.scalars(query.order_by(SavedReply.shortcut).limit(50)))
    found.sort(key=lambda r: (not r.shortcut.startswith(q), r.shortcut))
    return found[:limit]


def fill(account_id: int, reply_id: int, conversation_id: int, agent_user_id: int | None) -> str:
    """A saved reply's text with this conversation's variables filled (nothing left as `{...}`)."""
    reply = get_reply(account_id, reply_id)
    conversation = db.session.scalar(select(Conversation).where(Conversation.account_id == account_id,
                                                                Conversation.id == conversation_id))
    if reply is None or conversation is None:
        raise LookupError("no such saved reply or conversation")
    identity = db.session.scalar(select(Identity).where(Identity.account_id == account_id,
                                                        Identity.igsid == conversation.customer_igsid))
    product = db.session.get(Product, conversation.product_id) if conversation.product_id else None
    agent = db.session.get(StaffUser, agent_user_id) if agent_user_id else None
    agent_name = ((agent.name or "").split() or [agent.email.split("@")[0]])[0] if agent is not None else ""
    values = customer_values(identity.name if identity else None, identity.username if identity else None,
                             product, agent_name)
    return fill_variables(reply.text, values)
