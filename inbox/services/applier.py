"""The applier: stored deliveries applied in id order, in batches, by one or more workers.

The webhook only stores a delivery (`deliveries.store_delivery`) and wakes the applier.
Each worker process runs one applier loop (`run_applier`): it claims the oldest
`received` deliveries (`claim`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two appliers
never take the same one; SQLite serializes writers, so one applier is all it needs),
parses them (pure), applies the batch's events together through
`ingest.dispatch.apply_events` (consecutive customer messages, whatever delivery they
came in, are one set-based transaction), records each delivery's status and results in
the last transaction, and the live publishes and follow-up jobs run after that commit.

A claim is a lease: a delivery claimed more than `APPLIER_LEASE_SECONDS` ago and still
`received` belonged to an applier that died, and is claimed again. Applying is idempotent
(a mid is stored once), so such a second try changes nothing that the first one did.
Order inside a conversation follows Meta's timestamp (`conversations.touch`, and the
thread is sorted by it), never the order deliveries were applied in, which is what lets
several appliers work side by side.

The wake-up is a Redis list (`rkey("applier", "wake")`): the webhook pushes, an idle
applier waits on it with BLPOP; without Redis the applier still looks every
`APPLIER_POLL_SECONDS`, so a lost wake-up only costs that much time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import bindparam, or_, select, text, update

from .. import metrics
from ..extensions import db, get_redis, rkey
from ..logs import log_context
from ..models import WebhookDelivery, utcnow
from .events import Event, InvalidBody, parse_delivery
from .ingest.dispatch import apply_events
from .ingest.outcomes import Outcome
from .transactions import is_outage

log = logging.getLogger(__name__)

WAKE_KEY = ("applier", "wake")


class _ForkGate:
    """No fork while an applier of this process is inside a batch.

    The worker forks a process per RQ job. SQLite keeps its file-lock bookkeeping per
    process: a child forked while the applier thread held a lock inherits a lock nobody
    in it will release, and every query of that job then waits until "database is
    locked". Appliers pass the gate around each batch (several at once); a fork waits
    until none is inside (a batch takes milliseconds) and holds the gate while it forks.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False

    def __enter__(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active += 1

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def before_fork(self) -> None:
        self._cond.acquire()
        self._forking = True
        while self._active:
            self._cond.wait()

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        self.__init__()


_GATE = _ForkGate()
os.register_at_fork(before=_GATE.before_fork, after_in_parent=_GATE.after_fork_in_parent,
                    after_in_child=_GATE.after_fork_in_child)


@dataclass
class Claimed:
    """A delivery this applier holds: what it needs to apply it."""

    id: int
    body: bytes
    received_at: datetime
    attempts: int
    origin: str


@dataclass
class DeliveryResult:
    delivery_id: int
    status: str
    error: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)


def new_owner(kind: str = "applier") -> str:
    """A claim owner's name: the host, the process, and a random part (unique per claimer)."""
    return f"{kind}.{socket.gethostname()[:24]}.{os.getpid()}.{uuid.uuid4().hex[:8]}"[:64]


def lease() -> timedelta:
    return timedelta(seconds=float(current_app.config["APPLIER_LEASE_SECONDS"]))


def _claimable(table, now: datetime):
    return (table.c.status == "received") & or_(table.c.claimed_at.is_(None), table.c.claimed_at < now - lease())


def claim(limit: int, owner: str) -> list[Claimed]:
    """Take up to `limit` unclaimed (or lapsed) received deliveries, oldest first; committed."""
    table = WebhookDelivery.__table__
    now = utcnow()
    pick = select(table.c.id).where(_claimable(table, now)).order_by(table.c.id).limit(limit)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    try:
        if postgres:
            # A claim lost in a crash only means the delivery is claimed again: no disk flush for it.
            db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        rows = db.session.execute(
            update(table).where(table.c.id.in_(pick.scalar_subquery()))
            .values(claimed_by=owner, claimed_at=now)
            .returning(table.c.id, table.c.body, table.c.received_at, table.c.attempts, table.c.origin)
        ).all()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return sorted((Claimed(r.id, bytes(r.body), r.received_at, r.attempts or 0, r.origin) for r in rows),
                  key=lambda c: c.id)


def claim_one(delivery_id: int, owner: str, *, any_status: bool = False) -> Claimed | None:
    """Claim one delivery (a replay takes any status back to received); None when someone else holds it."""
    table = WebhookDelivery.__table__
    now = utcnow()
    free = or_(table.c.status != "received", table.c.claimed_at.is_(None), table.c.claimed_at < now - lease(),
               table.c.claimed_by == owner)
    condition = free if any_status else _claimable(table, now) | (table.c.claimed_by == owner)
    try:
        row = db.session.execute(
            update(table).where(table.c.id == delivery_id, condition)
            .values(status="received", claimed_by=owner, claimed_at=now)
            .returning(table.c.id, table.c.body, table.c.received_at, table.c.attempts, table.c.origin)
        ).first()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return Claimed(row.id, bytes(row.body), row.received_at, row.attempts or 0, row.origin) if row else None


def apply_claimed(batch: list[Claimed], *, create_accounts: bool = False) -> list[DeliveryResult]:
    """Apply claimed deliveries' events together, in id order; each delivery's status is recorded.

    Raises the database outage that stopped it (what was not applied stays claimed, and
    the claim lapses); any other failure stays with the event that caused it.
    """
    if not batch:
        return []
    parsed: list[tuple[Claimed, list[Outcome], list[Event]]] = []
    for claimed in batch:
        received_ms = int(claimed.received_at.timestamp() * 1000)
        try:
            events = list(parse_delivery(claimed.body, received_ms).events)
            parsed.append((claimed, [], events))
        except InvalidBody as exc:
            # Signed but never readable: replaying it cannot help, so it is ignored with the reason.
            parsed.append((claimed, [Outcome(index=0, type="invalid", action="ignored", reason=str(exc))], []))
    flat = [event for _, _, events in parsed for event in events]

    def split(outcomes: list[Outcome]) -> list[tuple[Claimed, list[Outcome]]]:
        out, at = [], 0
        for claimed, invalid, events in parsed:
            out.append((claimed, [*invalid, *outcomes[at:at + len(events)]]))
            at += len(events)
        return out

    def record(outcomes: list[Outcome]) -> None:
        _record([(claimed, theirs) for claimed, theirs in split(outcomes)])

    label = (f"webhook delivery {batch[0].id}" if len(batch) == 1
             else f"webhook deliveries {batch[0].id}-{batch[-1].id}")
    with log_context(delivery_id=batch[0].id):
        outcomes = apply_events(flat, create_accounts=create_accounts, finish=record, label=label)
    results = []
    for claimed, theirs in split(outcomes):
        status, error = delivery_status(theirs)
        metrics.delivery_finished(status)
        metrics.events_applied(theirs, claimed.received_at.timestamp())
        results.append(DeliveryResult(claimed.id, status, error, theirs))
    return results


def drain(owner: str, *, limit: int | None = None, max_batches: int | None = None) -> int:
    """Claim and apply until nothing is waiting; returns how many deliveries were applied."""
    cfg = current_app.config
    limit = limit or int(cfg["APPLIER_BATCH_DELIVERIES"])
    max_bytes = int(cfg["APPLIER_BATCH_BYTES"])
    done = batches = 0
    while max_batches is None or batches < max_batches:
        with _GATE:  # no fork of this process in the middle of a batch (see _ForkGate)
            batch = claim(limit, owner)
            if not batch:
                break
            batches += 1
            for group in _by_size(batch, max_bytes):
                done += len(apply_claimed(group))
    return done


def _by_size(batch: list[Claimed], budget: int) -> list[list[Claimed]]:
    """Split a claim so one transaction stays a sensible size (the bodies' bytes stand in for events)."""
    groups: list[list[Claimed]] = [[]]
    size = 0
    for claimed in batch:
        if groups[-1] and size + len(claimed.body) > budget:
            groups.append([])
            size = 0
        groups[-1].append(claimed)
        size += len(claimed.body)
    return groups


def delivery_status(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """processed / failed / ignored, and the error or reason a person reads."""
    failures = [o for o in outcomes if o.error]
    if failures and len(outcomes) == 1:
        return "failed", failures[0].error
    if failures:
        return "failed", f"{len(failures)} of {len(outcomes)} event(s) failed; first: {failures[0].error}"
    noted = [o for o in outcomes if o.note]
    if any(o.action != "ignored" for o in outcomes):
        # Applied; an event parsing had to adjust marks the delivery (its results say which).
        return "processed", (f"{len(noted)} event(s) adjusted; first: {noted[0].note}" if noted else None)
    if len(outcomes) == 1 and outcomes[0].type == "invalid":
        return "ignored", outcomes[0].reason  # the body itself was unreadable: say why
    if noted:
        return "ignored", f"{len(noted)} event(s) adjusted; first: {noted[0].note}"
    return "ignored", None  # nothing for the inbox: comments of unknown accounts, other objects


def _record(done: list[tuple[Claimed, list[Outcome]]]) -> None:
    """Write every delivery's status and per-event results in one statement (the caller commits)."""
    table = WebhookDelivery.__table__
    now = utcnow()
    rows = []
    for claimed, outcomes in done:
        status, error = delivery_status(outcomes)
        rows.append({"_id": claimed.id, "_status": status, "_error": error, "_attempts": claimed.attempts + 1,
                     "_count": len(outcomes), "_results": [o.result() for o in outcomes]})
    db.session.execute(
        update(table).where(table.c.id == bindparam("_id")).values(
            status=bindparam("_status"), error=bindparam("_error"), attempts=bindparam("_attempts"),
            event_count=bindparam("_count"), results=bindparam("_results", type_=table.c.results.type),
            processed_at=now,
        ).execution_options(synchronize_session=False),
        rows,
    )


# --- Waking and the loop ---------------------------------------------------------------------

def wake(app: Flask | None = None) -> None:
    """Tell an idle applier there is work (best effort: without Redis it finds it by polling)."""
    app = app or current_app
    try:
        r = get_redis(app)
        r.lpush(rkey(*WAKE_KEY, app=app), 1)
    except Exception:
        log.debug("applier wake-up not sent (Redis unavailable); it polls", exc_info=True)


def run_applier(app: Flask, stop: threading.Event, *, owner: str | None = None) -> None:
    """The loop a worker runs beside RQ: drain, then wait for a wake-up (or the poll interval)."""
    owner = owner or new_owner()
    poll = float(app.config["APPLIER_POLL_SECONDS"])
    key = rkey(*WAKE_KEY, app=app)
    backoff = poll
    with app.app_context():
        log.info("applier %s started", owner)
        while not stop.is_set():
            r = get_redis(app)
            try:
                r.delete(key)  # wake-ups so far are answered by the drain below
            except Exception:
                pass
            try:
                drain(owner)
                backoff = poll
            except Exception as exc:
                db.session.rollback()
                if is_outage(exc):
                    log.warning("applier %s: database unavailable; trying again in %.0f s", owner, backoff)
                else:
                    log.exception("applier %s: a batch failed; trying again in %.0f s", owner, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            finally:
                db.session.remove()
            if stop.is_set():
                break
            try:
                r.blpop([key], timeout=max(1, int(poll)))
            except Exception:
                stop.wait(poll)
        log.info("applier %s stopped", owner)


def start_applier(app: Flask, stop: threading.Event) -> threading.Thread:
    """Start the applier thread (the worker calls this; `inbox run` and `inbox demo` start a worker)."""
    thread = threading.Thread(target=run_applier, args=(app, stop), name="applier", daemon=True)
    thread.start()
    return thread


# --- The lag a person sees -------------------------------------------------------------------

@dataclass
class ApplyLag:
    waiting: int  # received, not applied yet
    oldest_waiting_seconds: float  # 0 when nothing waits
    recent: int  # deliveries applied in the window the percentiles cover
    p50_seconds: float | None
    p99_seconds: float | None
    behind: bool  # the oldest waiting one is older than APPLIER_MAX_LAG_SECONDS


def apply_lag(*, window: int = 1000) -> ApplyLag:
    """How far behind the applier is now, and how long the last deliveries waited (first tries only)."""
    table = WebhookDelivery.__table__
    now = utcnow()
    waiting = db.session.execute(
        select(db.func.count(), db.func.min(table.c.received_at)).where(table.c.status == "received")).one()
    oldest = max(0.0, (now - waiting[1]).total_seconds()) if waiting[1] else 0.0
    recent = db.session.execute(
        select(table.c.received_at, table.c.processed_at)
        .where(table.c.processed_at.is_not(None), table.c.attempts == 1, table.c.origin == "webhook")
        .order_by(table.c.id.desc()).limit(window)).all() if window else []
    lags = sorted(max(0.0, (p - r).total_seconds()) for r, p in recent)

    def pct(q: float) -> float | None:
        return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None

    limit = float(current_app.config["APPLIER_MAX_LAG_SECONDS"])
    return ApplyLag(waiting=waiting[0], oldest_waiting_seconds=oldest, recent=len(lags),
                    p50_seconds=pct(0.5), p99_seconds=pct(0.99), behind=oldest > limit)
