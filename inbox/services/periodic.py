"""The worker's periodic work: the daily check and the recovery every few minutes.

Each check's next run is a row in `periodic_tasks` (not a job in Redis, which may lose
everything): the worker's reconciler (`services.obligations`) enqueues a check whose time
has come, keyed by its slot so every worker asking makes one job, and the run moves the
row to the next slot when it ends, whatever happened. A run killed midway leaves the row
due, so it runs again; a run missed while no worker was up starts when one comes back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import PeriodicTask, utcnow
from ..queue import enqueue
from . import accounts_maintenance, deliveries, erasure, media, sending

log = logging.getLogger(__name__)

# name → (queue, RQ timeout)
TASKS = {"daily_check": ("low", 1800), "recovery": ("default", 1800)}


def next_slot(name: str, now: datetime | None = None) -> datetime:
    """When check `name` should next run after `now`."""
    now = now or datetime.now(timezone.utc)
    if name == "daily_check":
        at = now.replace(hour=int(current_app.config["ACCOUNT_CHECK_HOUR_UTC"]), minute=0, second=0, microsecond=0)
        return at if at > now else at + timedelta(days=1)
    interval = max(1, int(current_app.config["WEBHOOK_RECOVER_INTERVAL_SECONDS"]))
    slot = int(now.timestamp()) // interval + 1
    return datetime.fromtimestamp(slot * interval, timezone.utc)


def ensure_schedule(now: datetime | None = None) -> dict[str, datetime]:
    """Write each check's row if it has none yet (committed); returns every check's next run."""
    existing = {row.name: row.next_run_at for row in db.session.scalars(select(PeriodicTask))}
    for name in TASKS:
        if name in existing:
            continue
        db.session.add(PeriodicTask(name=name, next_run_at=next_slot(name, now)))
        try:
            db.session.commit()
        except IntegrityError:  # another worker wrote it at the same moment
            db.session.rollback()
    db.session.rollback()
    return {row.name: row.next_run_at for row in db.session.scalars(select(PeriodicTask))}


def enqueue_due(now: datetime | None = None) -> list[str]:
    """Enqueue every check whose time has come (one job per slot); returns their names."""
    now = now or utcnow()
    due = list(db.session.execute(select(PeriodicTask.name, PeriodicTask.next_run_at)
                                  .where(PeriodicTask.next_run_at <= now)))
    db.session.rollback()
    for name, at in due:
        queue_name, timeout = TASKS.get(name, ("default", 1800))
        enqueue(f"inbox.tasks.{name}", key=(int(at.timestamp()),), queue=queue_name, timeout=timeout,
                result_ttl=600)
    return [name for name, _ in due]


def run_now(name: str) -> None:
    """Make check `name` due at once (committed): the reconciler starts it within seconds."""
    now = utcnow()
    db.session.execute(update(PeriodicTask).where(PeriodicTask.name == name, PeriodicTask.next_run_at > now)
                       .values(next_run_at=now))
    db.session.commit()


def _started(name: str) -> None:
    db.session.execute(update(PeriodicTask).where(PeriodicTask.name == name).values(last_started_at=utcnow()))
    db.session.commit()


def _finished(name: str, error: BaseException | None) -> None:
    db.session.rollback()
    now = utcnow()
    values = dict(next_run_at=next_slot(name, now), last_finished_at=now,
                  last_error=f"{type(error).__name__}: {error}"[:500] if error else None)
    if not db.session.execute(update(PeriodicTask).where(PeriodicTask.name == name).values(**values)).rowcount:
        db.session.add(PeriodicTask(name=name, **values))
    db.session.commit()


def _run(name: str, work) -> None:
    _started(name)
    error = None
    try:
        work()
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            _finished(name, error)
        except Exception:  # the database is away: the row stays due and the check runs again
            log.exception("could not record the end of %s", name)


def run_daily_check() -> None:
    """Refresh tokens near expiry and restore webhook subscriptions (every account), delete
    messages past each account's retention, then stored media no row refers to any more."""
    def work():
        try:
            accounts_maintenance.refresh_tokens()
            erasure.apply_retention()
        finally:
            media.sweep()
    _run("daily_check", work)


def run_recovery() -> None:
    """Replay webhook deliveries an outage or a crash interrupted, then fail the sends whose
    echo never came or whose send job died mid-call."""
    def work():
        deliveries.recover_deliveries()
        sending.sweep_unconfirmed()
        for erasure_id in erasure.pending_account_erasures():  # Meta's data-deletion requests not done yet
            erasure.erase_account(erasure_id)
    _run("recovery", work)
