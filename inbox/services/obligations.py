"""What the inbox owes someone, read from the database, and the reconciler that keeps it moving.

Every obligation is a row (or a column) written in the same transaction as the change that
created it; RQ only runs it soon, and Redis may lose everything at any moment. The kinds:

- reply: an outgoing message still `pending` without a mid (never started, retrying after
  a throttle, interrupted mid-call, or waiting for Instagram's echo);
- media: an attachment whose copy is still `pending`;
- profile: a customer of an active account with no identity row yet;
- delivery: a webhook delivery interrupted while applied, or failed with tries left;
- check: a periodic check (the daily check, the delivery recovery) whose time has come;
- and, not shown: background runs whose process died (ended as failed, saying so).

`reconcile()` runs in every worker every RECONCILE_INTERVAL_SECONDS: it enqueues what is
due (job ids are deterministic, so a job still queued, scheduled or running is never
doubled), ends runs that died, and starts the periodic checks whose time came.
`oldest()` is what the deliveries page, /healthz, /metrics and `inbox doctor` show.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from ..extensions import db
from ..models import (Account, Attachment, Conversation, Identity, JobRun, Message, PeriodicTask, WebhookDelivery,
                      utcnow)
from . import deliveries, identities, jobruns, media, periodic, sending

log = logging.getLogger(__name__)

KINDS = ("reply", "media", "profile", "delivery", "check")
LIMIT = 500  # obligations of one kind looked at per pass (the oldest first)


@dataclass
class Oldest:
    """The oldest obligation of one kind not yet done."""

    kind: str
    count: int = 0
    due_at: datetime | None = None  # when the oldest one should have been done by
    overdue_seconds: float = 0.0  # how far past due + OBLIGATION_OVERDUE_SECONDS it is (0: not overdue)
    overdue_count: int = 0  # how many of them are overdue

    @property
    def overdue(self) -> bool:
        return self.overdue_seconds > 0


# --- Reading what is owed ----------------------------------------------------------------------

def _pending_replies(limit: int = LIMIT):
    return db.session.execute(
        select(Message.id, Message.error_code, Message.send_attempts, Message.created_at, Message.updated_at)
        .where(Message.direction == "out", Message.status == "pending", Message.mid.is_(None))
        .order_by(Message.updated_at).limit(limit)).all()


def _reply_due(row, now: datetime) -> datetime:
    """When a pending reply's next step is due (the send, its retry, or the end of the echo wait)."""
    cfg = current_app.config
    changed = row.updated_at or row.created_at or now
    if row.error_code == sending.RETRYING:
        intervals = list(cfg.get("SEND_RETRY_INTERVALS", sending.DEFAULT_RETRY_INTERVALS)) or [5]
        wait = intervals[min(max((row.send_attempts or 1) - 1, 0), len(intervals) - 1)]
        return changed + timedelta(seconds=wait)
    if row.error_code == sending.AMBIGUOUS:
        return changed + timedelta(seconds=int(cfg.get("SEND_ECHO_WAIT_SECONDS",
                                                        sending.DEFAULT_ECHO_WAIT_SECONDS)))
    return changed


def _pending_media(limit: int = LIMIT):
    return db.session.execute(
        select(Attachment.id, Attachment.created_at).where(Attachment.media_state == "pending")
        .order_by(Attachment.id).limit(limit)).all()


def _missing_profiles(limit: int = LIMIT):
    """Customers of active accounts that have no identity row (their first fetch never happened)."""
    return db.session.execute(
        select(Conversation.account_id, Conversation.customer_igsid, Conversation.created_at)
        .join(Account, and_(Account.id == Conversation.account_id, Account.status == "active"))
        .outerjoin(Identity, and_(Identity.account_id == Conversation.account_id,
                                  Identity.igsid == Conversation.customer_igsid))
        .where(Identity.id.is_(None), Conversation.customer_igsid != Account.ig_user_id)
        .order_by(Conversation.created_at).limit(limit)).all()


def _owed_deliveries(limit: int = LIMIT):
    max_attempts = int(current_app.config.get("WEBHOOK_AUTO_REPLAY_ATTEMPTS", 3))
    return db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.received_at, WebhookDelivery.processed_at,
               WebhookDelivery.status)
        .where(deliveries.owed(max_attempts=max_attempts))
        .order_by(WebhookDelivery.id).limit(limit)).all()


def oldest(now: datetime | None = None) -> dict[str, Oldest]:
    """Per kind: how many obligations are not done, and how overdue the oldest is."""
    now = now or utcnow()
    allowed = timedelta(seconds=float(current_app.config["OBLIGATION_OVERDUE_SECONDS"]))
    dues: dict[str, list[datetime]] = {
        "reply": [_reply_due(row, now) for row in _pending_replies()],
        "media": [row.created_at for row in _pending_media()],
        "profile": [row.created_at for row in _missing_profiles()],
        # A delivery is applied as it arrives; one still "received" after that was interrupted.
        "delivery": [(row.processed_at or row.received_at) for row in _owed_deliveries()],
        # A check is owed from its time until a run starts (a run in progress is not late; a killed
        # one is run again by the reconciler and starts afresh).
        "check": list(db.session.scalars(select(PeriodicTask.next_run_at).where(
            PeriodicTask.next_run_at <= now,
            or_(PeriodicTask.last_started_at.is_(None), PeriodicTask.last_started_at < PeriodicTask.next_run_at)))),
    }
    db.session.rollback()
    out = {}
    for kind in KINDS:
        times = [t for t in dues[kind] if t is not None]
        first = min(times) if times else None
        late = (now - first - allowed).total_seconds() if first is not None else 0.0
        out[kind] = Oldest(kind, len(dues[kind]), first, max(late, 0.0),
                           sum(1 for t in times if now - t > allowed))
    return out


def overdue(now: datetime | None = None) -> list[Oldest]:
    """The kinds whose oldest obligation is overdue (empty: all is well)."""
    return [item for item in oldest(now).values() if item.overdue]


# --- The reconciler ----------------------------------------------------------------------------

@dataclass
class Pass:
    """What one reconciler pass enqueued or ended (for logs and tests)."""

    replies: int = 0
    expiries: int = 0
    media: int = 0
    profiles: int = 0
    runs_ended: int = 0
    periodic: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.replies or self.expiries or self.media or self.profiles or self.runs_ended
                    or self.periodic)


class Reconciler:
    """One worker's reconciler: call `run_once()` every RECONCILE_INTERVAL_SECONDS."""

    def __init__(self) -> None:
        self._dead_since: dict[int, float] = {}  # run id → when it first looked dead

    def run_once(self, now: datetime | None = None) -> Pass:
        now = now or utcnow()
        grace = timedelta(seconds=float(current_app.config["RECONCILE_GRACE_SECONDS"]))
        done = Pass()
        for row in _pending_replies():
            due = _reply_due(row, now)
            if row.error_code in (None, sending.SENDING) and due > now - grace:
                continue  # just written: its own commit enqueued it
            if due > now:
                continue
            if row.error_code == sending.AMBIGUOUS:
                sending.enqueue_expiry_now(row.id)
                done.expiries += 1
            else:
                sending.enqueue_send_now(row.id)
                done.replies += 1
        for row in _pending_media():
            if row.created_at is None or row.created_at <= now - grace:
                media.enqueue_downloads([row.id])
                done.media += 1
        for row in _missing_profiles():
            if row.created_at is None or row.created_at <= now - grace:
                identities.enqueue_fetch(row.account_id, row.customer_igsid)
                done.profiles += 1
        db.session.rollback()
        done.runs_ended = self._end_dead_runs()
        cutoff = now - max(deliveries.INTERRUPTED_AFTER, grace)
        if any((row.status == "received" and row.received_at <= cutoff) or row.status == "failed"
               for row in _owed_deliveries(limit=50)):
            periodic.run_now("recovery")  # replays them now rather than at the next slot
        db.session.rollback()
        done.periodic = tuple(periodic.enqueue_due(now))
        if done:
            log.info("reconciler: %s", done)
        return done

    def _end_dead_runs(self) -> int:
        """End runs whose process died: dead on two looks a few heartbeats apart (a Redis that
        was just flushed loses the heartbeat keys too, and a live run sets its own again)."""
        patience = 3 * float(current_app.config["JOB_HEARTBEAT_SECONDS"])
        active = list(db.session.scalars(select(JobRun).where(JobRun.state.in_(jobruns.ACTIVE))))
        seen, ended = set(), 0
        for run in active:
            seen.add(run.id)
            if jobruns.is_alive(run):
                self._dead_since.pop(run.id, None)
                continue
            first = self._dead_since.setdefault(run.id, time.monotonic())
            if time.monotonic() - first >= patience:
                jobruns.end_dead(run)
                self._dead_since.pop(run.id, None)
                ended += 1
        for run_id in set(self._dead_since) - seen:
            self._dead_since.pop(run_id, None)
        db.session.rollback()
        return ended




