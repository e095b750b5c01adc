"""Who owns a conversation: assign by hand (thread, list in bulk, CLI), assign-on-reply, and the
optional round-robin of new conversations among agents who are online and not away.

Every change is an activity line (`assigned` / `unassigned`), a `conversation.updated` push
(team=1: the thread header's assignee and labels follow) and, for the new assignee, a
desktop notification (`staff.notify`).
"""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db, get_redis, on_commit, rkey
from ..live.publish import publish_after_commit
from ..models import Account, Conversation, Membership, StaffUser, utcnow
from ..queue import enqueue
from . import activity, presence, team
from .staff import StaffError


class NotFound(LookupError):
    """No such conversation in this account."""


def _conversation(account_id: int, conversation_id: int, *, lock: bool = False) -> Conversation:
    query = select(Conversation).where(Conversation.account_id == account_id, Conversation.id == conversation_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    conversation = db.session.scalar(query)
    if conversation is None:
        raise NotFound(conversation_id)
    return conversation


def _apply(account_id: int, conversation: Conversation, assignee_id: int | None, actor_id: int | None,
           detail: str | None = None) -> bool:
    """Set the assignee in the caller's transaction; False when nothing changed."""
    if conversation.assignee_user_id == assignee_id:
        return False
    conversation.assignee_user_id = assignee_id
    conversation.updated_at = utcnow()
    if assignee_id is None:
        activity.record_event(account_id, conversation.id, "unassigned", actor_user_id=actor_id)
    else:
        event = activity.record_event(account_id, conversation.id, "assigned", actor_user_id=actor_id,
                                      target_user_id=assignee_id, detail=detail)
        if assignee_id != actor_id:
            publish_after_commit(account_id, "staff.notify", user_id=assignee_id, conversation_id=conversation.id,
                                 event_id=event.id, kind="assigned")
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id, team=1)
    return True


def assign(account_id: int, conversation_id: int, assignee_id: int | None, *, actor_id: int | None) -> Conversation:
    """Give a conversation to a member of its account (None: unassign). Committed."""
    if assignee_id is not None and not team.is_member(account_id, assignee_id):
        raise StaffError("That person is not on this account's team.")
    conversation = _conversation(account_id, conversation_id, lock=True)
    _apply(account_id, conversation, assignee_id, actor_id)
    db.session.commit()
    return conversation


def assign_many(account_id: int, conversation_ids: list[int], assignee_id: int | None, *,
                actor_id: int | None) -> int:
    """Bulk assign from the list: the account's conversations among these ids; how many changed."""
    if assignee_id is not None and not team.is_member(account_id, assignee_id):
        raise StaffError("That person is not on this account's team.")
    ids = sorted({int(i) for i in conversation_ids})[:500]
    if not ids:
        return 0
    rows = list(db.session.scalars(select(Conversation).where(Conversation.account_id == account_id,
                                                              Conversation.id.in_(ids))
                                   .order_by(Conversation.id).with_for_update()))
    changed = sum(_apply(account_id, c, assignee_id, actor_id) for c in rows)
    db.session.commit()
    return changed


def assign_on_reply(account_id: int, conversation: Conversation, user_id: int) -> None:
    """Replying to an unassigned conversation makes it the replier's (per-account setting, on by default).

    In the caller's transaction (the reply's), with the conversation row held by it.
    """
    if conversation.assignee_user_id is not None or user_id is None:
        return
    account = db.session.get(Account, account_id)
    if account is None or not account.assign_on_reply:
        return
    _apply(account_id, conversation, user_id, user_id)


def set_settings(account_id: int, *, assign_on_reply: bool | None = None, auto_assign: bool | None = None) -> Account:
    account = db.session.get(Account, account_id)
    if assign_on_reply is not None:
        account.assign_on_reply = bool(assign_on_reply)
    if auto_assign is not None:
        account.auto_assign = bool(auto_assign)
    db.session.commit()
    return account


# --- Round-robin of new conversations ------------------------------------------------------------

def note_new_conversations(account_conversations: list[tuple[int, int]]) -> None:
    """Ingestion created these (account, conversation): those of accounts with auto-assignment get a job."""
    if not account_conversations:
        return
    accounts = {a for a, _ in account_conversations}
    auto = set(db.session.scalars(select(Account.id).where(Account.id.in_(accounts), Account.auto_assign.is_(True))))
    for account_id, conversation_id in account_conversations:
        if account_id in auto:
            on_commit(lambda c=conversation_id: enqueue("inbox.tasks.auto_assign", c))


def candidates(account_id: int) -> list[int]:
    """Agents of the account who are online now and not away, by id (the round-robin's circle)."""
    agents = list(db.session.scalars(
        select(StaffUser.id).join(Membership, Membership.user_id == StaffUser.id)
        .where(Membership.account_id == account_id, Membership.role == "agent", StaffUser.away.is_(False),
               StaffUser.active.is_(True)).order_by(StaffUser.id)))
    online = presence.online_user_ids(account_id, agents)
    return [a for a in agents if a in online]


def auto_assign(conversation_id: int) -> int | None:
    """Give a new, still unassigned conversation to the next online agent (round-robin); their id or None."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.assignee_user_id is not None:
        return None
    account = db.session.get(Account, conversation.account_id)
    if account is None or not account.auto_assign:
        return None
    circle = candidates(account.id)
    if not circle:
        return None
    turn = get_redis().incr(rkey("round-robin", account.id))
    chosen = circle[(turn - 1) % len(circle)]
    conversation = _conversation(account.id, conversation_id, lock=True)
    if conversation.assignee_user_id is not None:
        db.session.rollback()
        return None
    _apply(account.id, conversation, chosen, None, detail="round-robin")
    db.session.commit()
    return chosen

