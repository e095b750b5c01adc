"""Who is online, who is viewing a conversation and who is typing in it: Redis keys with a
short TTL, never a database write (a keystroke is at most one SET and one publish).

Keys (through rkey): `online:<account>:<user>` (an open /live socket refreshes it),
`viewing:<account>:<conversation>:<user>`, `typing:<account>:<conversation>:<user>`, and
`replied:<account>:<conversation>` (who sent the latest staff reply, for the collision check).

Presence is a courtesy, never an obligation: while Redis is down every function here does
nothing and answers "nobody" (a reply is still stored, a thread still opens, a new
conversation is still assigned), and says so in the log.
"""

from __future__ import annotations

import functools
import logging
import time

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select

from ..extensions import db, get_redis, rkey
from ..live.publish import publish
from ..models import Membership, StaffUser

ONLINE_SECONDS = 90

log = logging.getLogger(__name__)


def _best_effort(default):
    """Answer `default` (nobody, nothing changed) when Redis cannot be reached."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except RedisError as exc:
                log.warning("presence unavailable (%s: %s): %s answers %r", type(exc).__name__, exc,
                            fn.__name__, default)
                return default() if callable(default) else default
        return call
    return wrap


@_best_effort(None)
def mark_online(account_ids, user_id: int) -> None:
    pipe = get_redis().pipeline(transaction=False)
    for account_id in account_ids:
        pipe.set(rkey("online", account_id, user_id), 1, ex=ONLINE_SECONDS)
    pipe.execute()


@_best_effort(None)
def mark_offline(account_ids, user_id: int) -> None:
    get_redis().delete(*[rkey("online", a, user_id) for a in account_ids] or ["-"])


@_best_effort(set)
def online_user_ids(account_id: int, user_ids) -> set[int]:
    user_ids = list(user_ids)
    if not user_ids:
        return set()
    found = get_redis().mget([rkey("online", account_id, u) for u in user_ids])
    return {u for u, v in zip(user_ids, found) if v is not None}


def _scan_users(pattern: str) -> set[int]:
    out = set()
    for key in get_redis().scan_iter(match=pattern, count=200):
        tail = (key.decode() if isinstance(key, bytes) else key).rsplit(":", 1)[-1]
        if tail.isdigit():
            out.add(int(tail))
    return out


@_best_effort(False)
def signal(account_id: int, conversation_id: int, user_id: int, what: str) -> bool:
    """A socket said "view", "leave", "typing" or "idle" about a conversation; True when it changed anything.

    Only a change is published (the first keystroke of a burst, not every one).
    """
    r = get_redis()
    cfg = current_app.config
    view_key = rkey("viewing", account_id, conversation_id, user_id)
    typing_key = rkey("typing", account_id, conversation_id, user_id)
    if what == "view":
        changed = _set_fresh(r, view_key, cfg["PRESENCE_VIEW_SECONDS"])
    elif what == "leave":
        changed = bool(r.delete(view_key, typing_key))
    elif what == "typing":
        changed = _set_fresh(r, view_key, cfg["PRESENCE_VIEW_SECONDS"])
        changed = _set_fresh(r, typing_key, cfg["PRESENCE_TYPING_SECONDS"]) or changed
    elif what == "idle":
        changed = bool(r.delete(typing_key))
    else:
        return False
    if changed:
        publish(account_id, "presence.updated", conversation_id=conversation_id)
    return changed


def _set_fresh(r, key: str, seconds: int) -> bool:
    """Set a key for `seconds` (or keep it that long again); True when it was not there."""
    if r.set(key, 1, ex=seconds, nx=True):
        return True
    r.expire(key, seconds)
    return False


@_best_effort(lambda: (set(), set()))
def in_conversation(account_id: int, conversation_id: int) -> tuple[set[int], set[int]]:
    """(viewing, typing) user ids of a conversation now."""
    viewing = _scan_users(rkey("viewing", account_id, conversation_id, "*"))
    typing = _scan_users(rkey("typing", account_id, conversation_id, "*"))
    return viewing | typing, typing


def who_is_here(account_id: int, conversation_id: int) -> tuple[list, set[int]]:
    """(members viewing, ids of those typing) of a conversation now: what its header shows on open."""
    viewing, typing = in_conversation(account_id, conversation_id)
    if not viewing:
        return [], set()
    users = db.session.scalars(select(StaffUser).join(Membership, Membership.user_id == StaffUser.id)
                               .where(Membership.account_id == account_id, StaffUser.id.in_(sorted(viewing)))
                               .order_by(StaffUser.id))
    return list(users), typing


@_best_effort(None)
def note_reply(account_id: int, conversation_id: int, user_id: int) -> None:
    """A staff reply was queued: remembered for the collision check."""
    get_redis().set(rkey("replied", account_id, conversation_id), f"{user_id}:{time.time():.3f}",
                    ex=max(int(current_app.config["COLLISION_SECONDS"]), 1))


@_best_effort(None)
def recent_reply_by_other(account_id: int, conversation_id: int, user_id: int) -> int | None:
    """The colleague who replied to this conversation in the last COLLISION_SECONDS (None: nobody else)."""
    value = get_redis().get(rkey("replied", account_id, conversation_id))
    if not value:
        return None
    who, _, at = (value.decode() if isinstance(value, bytes) else value).partition(":")
    if not who.isdigit() or int(who) == user_id:
        return None
    if time.time() - float(at or 0) > current_app.config["COLLISION_SECONDS"]:
        return None
    return int(who)
