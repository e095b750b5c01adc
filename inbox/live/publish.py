"""Live events: what writers send after a commit, on which Redis channel.

Events (type: the ids it carries):
    message.created       conversation_id, message_id
    message.updated       conversation_id, message_id
    conversation.updated  conversation_id (product=1 when the product decision changed,
                          removed_message_id when a duplicate bubble was merged away)
    job.progress          job_run_id
    account.updated       (none)
    comment.created       comment_id, post_id (the row ids; post_id 0 when the media is unknown)
    comment.updated       comment_id, post_id (edited, deleted, hidden, replied to, automation ran)
    automation.updated    automation_id (paused, resumed, fired)
    conversation.event    conversation_id, event_id (an activity line or a note: services.activity)
    staff.notify          user_id, conversation_id, event_id, kind ("assigned" or "mention"): a desktop
                          notification for that one member (the page of everyone else ignores it)
    presence.updated      conversation_id (someone started or stopped viewing or typing)
    team.updated          (none) members, roles, away status or invites changed

They travel on the Redis channel rkey("live", account_id) as JSON
{"type": ..., "account_id": ..., **ids}. Render once: when a socket of the account is open
anywhere (the hubs count them in rkey("live", "watched")), the writer renders the frame
for its events itself, once for the whole fleet (the renderer the hub registers as
app.extensions["inbox_live_prerender"]), marks those events "framed" and publishes
{"type": "frame", "account_id": ..., "html": ...} after them: web processes forward the
bytes instead of rendering. Publish only after the data is committed: call
publish_after_commit inside the transaction, or publish once it is committed. A new event
type goes in EVENT_TYPES (and in STATE_EVENTS when a repeat says nothing new) and gets a
renderer in inbox.live.frames.
"""

from __future__ import annotations

import json
import logging

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..extensions import db, get_redis, on_commit, rkey

log = logging.getLogger(__name__)

EVENT_TYPES = ("message.created", "message.updated", "conversation.updated", "job.progress", "account.updated",
               "comment.created", "comment.updated", "automation.updated", "conversation.event", "staff.notify",
               "presence.updated", "team.updated")

# Events that only say "show the current state of this": their renderers read the database, so
# repeats within one batch render once. Each maps to the id that makes two of them the same
# (None: any two are the same).
STATE_EVENTS: dict[str, str | None] = {"conversation.updated": "conversation_id", "message.updated": "message_id",
                                       "job.progress": "job_run_id", "account.updated": None,
                                       "comment.updated": "comment_id", "automation.updated": "automation_id",
                                       "presence.updated": "conversation_id", "team.updated": None}

_PENDING = "live_pending"  # db.session.info key: this transaction's events, published after its commit


ACCESS_REVOKED = "access.revoked"  # on ACCESS_CHANNEL: {"type", "user_id", "account_id" (None: every account)}


def access_channel(app=None) -> str:
    """The channel that tells every web process to close a person's sockets (matches the hub's pattern)."""
    return rkey("live", "access", app=app)


def publish_access_revoked(user_id: int, account_id: int | None = None) -> bool:
    """Close user_id's open sockets (for account_id, or all of them) in every web process, now.

    False when Redis did not take it: the sockets then close at their next membership check."""
    try:
        get_redis().publish(access_channel(), json.dumps({"type": ACCESS_REVOKED, "user_id": user_id,
                                                          "account_id": account_id}))
        return True
    except Exception:
        log.warning("could not publish the revocation of user %s", user_id, exc_info=True)
        return False


def channel(account_id: int, app=None) -> str:
    """The Redis channel of one account's events."""
    return rkey("live", account_id, app=app)


def channel_pattern(app=None) -> str:
    """Every account's channel (the hub's pattern subscription)."""
    return rkey("live", "*", app=app)


def publish(account_id: int, event_type: str, **ids: int | str) -> None:
    """Send one event to every web process now (the data must already be committed)."""
    _send([(account_id, _payload(account_id, event_type, ids))])


def publish_after_commit(account_id: int, event_type: str, **ids: int | str) -> None:
    """Publish once the current transaction commits (never if it rolls back).

    The events of one transaction go out together, in order, after its other follow-ups
    (enqueues), in one Redis round trip: a batch of a hundred messages is one pipeline,
    not two hundred publishes.
    """
    payload = _payload(account_id, event_type, ids)
    pending = db.session.info.get(_PENDING)
    if pending is None:
        pending = db.session.info[_PENDING] = []
        on_commit(lambda: _publish_all(pending), last=True)
    pending.append((account_id, payload))


def _payload(account_id: int, event_type: str, ids: dict) -> str:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown live event {event_type!r}")
    return json.dumps({"type": event_type, "account_id": account_id, **ids})


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)  # its publish callback was dropped with the transaction


def _publish_all(pending: list[tuple[int, str]]) -> None:
    db.session.info.pop(_PENDING, None)
    _send(pending)


def _send(pending: list[tuple[int, str]]) -> None:
    """Publish in one round trip; with the frames of watched accounts rendered here, once."""
    try:
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        for account_id, payload in _with_frames(r, pending):
            pipe.publish(channel(account_id), payload)
        pipe.execute()
    except Exception:  # a lost live update is repaired by the client's refetch on reconnect
        log.warning("live publish failed for %d event(s)", len(pending), exc_info=True)


def watched_key(app=None) -> str:
    """Hash: account id -> how many web processes hold a socket of it (hub.py keeps it)."""
    return rkey("live", "watched", app=app)


def _with_frames(r, pending: list[tuple[int, str]]) -> list[tuple[int, str]]:
    prerender = current_app.extensions.get("inbox_live_prerender")
    if prerender is None or not pending:
        return pending
    accounts = list(dict.fromkeys(account_id for account_id, _ in pending))
    watched = [a for a, n in zip(accounts, r.hmget(watched_key(), accounts)) if n and int(n) > 0]
    frames: dict[int, str] = {}
    for account_id in watched:
        theirs = [json.loads(payload) for a, payload in pending if a == account_id]
        try:
            frames[account_id] = prerender(account_id, theirs) or ""
        except Exception:  # the web processes render them instead
            log.exception("rendering live events for account %s failed", account_id)
    if not frames:
        return pending
    out = [(a, payload[:-1] + ', "framed": 1}' if a in frames else payload) for a, payload in pending]
    out += [(a, json.dumps({"type": "frame", "account_id": a, "html": html})) for a, html in frames.items()]
    return out
