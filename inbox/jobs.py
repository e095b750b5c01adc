"""RQ entry points (thin: take ids, call services) and the one helper that enqueues."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from .extensions import get_redis

log = logging.getLogger(__name__)

# Queue names, most urgent first: a worker drains them in this order.
QUEUES = ("high", "default", "low")


def queue_name(name: str, app=None) -> str:
    app = app or current_app
    return f"{app.config['REDIS_NAMESPACE']}-{name}"


def get_queue(name: str = "default", app=None) -> Queue:
    app = app or current_app
    return Queue(queue_name(name, app), connection=get_redis(app))


def all_queues(app=None) -> list[Queue]:
    return [get_queue(name, app) for name in QUEUES]


def enqueue(func: str, *args: Any, job_id: str | None = None, queue: str = "default",
            timeout: int = 300, retries: int = 0, retry_intervals: list[int] | None = None,
            at_front: bool = False, **kwargs: Any) -> Job | None:
    """Enqueue func ("inbox.jobs.name") once: a job id that is already queued or running is not doubled.

    Call it only after the rows the job reads are committed (see extensions.on_commit).
    """
    q = get_queue(queue)
    if job_id is not None:
        # rq accepts only letters, digits, "_" and "-" in job ids.
        job_id = re.sub(r"[^A-Za-z0-9_-]", "_", f"{current_app.config['REDIS_NAMESPACE']}_{job_id}")
        try:
            existing = Job.fetch(job_id, connection=q.connection)
        except NoSuchJobError:
            existing = None
        if existing is not None and existing.get_status(refresh=True) in (
            JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED,
        ):
            return existing
    retry = Retry(max=retries, interval=retry_intervals or [10, 60, 300]) if retries else None
    # rq takes positional args either inline or as args=, never both (with kwargs=).
    return q.enqueue(func, args=args, kwargs=kwargs or None, job_id=job_id, job_timeout=timeout, retry=retry,
                     at_front=at_front, result_ttl=3600, failure_ttl=7 * 24 * 3600)


# --- Entry points -------------------------------------------------------------------
# Thin: they take ids and call one service. Each issue fills in its service function.

def send_message(message_id: int) -> None:
    """Send one pending outgoing message through the Send API."""
    from .services.sending import send_message as run

    run(message_id)


def expire_unconfirmed_send(message_id: int) -> None:
    """Fail a send whose echo never came (it may not have reached the customer)."""
    from .services.sending import expire_unconfirmed as run

    run(message_id)


def fetch_profile(account_id: int, igsid: str) -> None:
    """Fetch (or refresh) one participant's profile."""
    from .services.identities import fetch_profile as run

    run(account_id, igsid)


def download_media(attachment_id: int) -> None:
    """Keep a copy of one attachment's media before Instagram's URL expires."""
    from .services.media import download_attachment as run

    run(attachment_id)


def keep_profile_picture(account_id: int, igsid: str) -> None:
    """Keep a copy of a participant's profile picture before its link expires."""
    from .services.media import keep_profile_picture as run

    run(account_id, igsid)


def assign_from_message(message_id: int) -> None:
    """Apply the product evidence one message carries (links, auto-link, assignment)."""
    from .services.products.assignment import assign_from_message as run

    run(message_id)


def load_own_media(job_run_id: int) -> None:
    """Load the account's own posts through the Graph API for the posts page (a JobRun)."""
    from .services.products.posts import load_own_media as run

    run(job_run_id)


def refresh_identities(job_run_id: int) -> None:
    """Refetch every participant of an account (a JobRun with progress)."""
    from .services.identities import refresh_identities as run

    run(job_run_id)


def resync_account(job_run_id: int) -> None:
    """Page through the Conversations API and merge what it returns (a JobRun)."""
    from .services.sync import resync_account as run

    run(job_run_id)


def refresh_tokens() -> None:
    """Daily: refresh long-lived tokens close to expiry, check webhook subscriptions, and
    delete stored media no row refers to any more (rows removed by SQL cascades)."""
    from .services.accounts_maintenance import refresh_tokens as run
    from .services.media import sweep

    schedule_account_checks()  # tomorrow's run first: a failure today must not end the chain
    try:
        run()
    finally:
        sweep()


def check_account(account_id: int) -> None:
    """The daily check for one account, now ("Check now" on the accounts page)."""
    from .services.accounts_maintenance import check_account as run

    run(account_id)


def connect_account(job_run_id: int) -> None:
    """Finish connecting an Instagram account after Business Login (a JobRun)."""
    from .services.connect import run_connect as run

    run(job_run_id)


def recover_deliveries() -> None:
    """Every few minutes: replay webhook deliveries an outage or a crash interrupted."""
    from .services.deliveries import recover_deliveries as run

    schedule_delivery_recovery()  # the next run first: a failure now must not end the chain
    run()
    from .services.sending import sweep_unconfirmed

    sweep_unconfirmed()  # replies whose echo never came, or whose send job died mid-call


def schedule_delivery_recovery(app=None, *, now: datetime | None = None) -> Job:
    """Make sure the next delivery recovery is scheduled; idempotent, like the daily check.

    The job id names the time slot, so every worker start and every run name the same
    next run: one recovery per interval however many workers there are.
    """
    app = app or current_app
    now = now or datetime.now(timezone.utc)
    interval = max(1, int(app.config["WEBHOOK_RECOVER_INTERVAL_SECONDS"]))
    slot = int(now.timestamp()) // interval + 1
    at = datetime.fromtimestamp(slot * interval, timezone.utc)
    return _schedule_once(app, "default", "inbox.jobs.recover_deliveries", f"recover-deliveries_{slot}", at,
                          result_ttl=3600)


# --- The daily schedule ----------------------------------------------------------------

def schedule_account_checks(app=None, *, now: datetime | None = None) -> Job:
    """Make sure the next daily account check is scheduled; idempotent.

    RQ's scheduler (the worker runs `with_scheduler=True`; one worker holds its lock)
    enqueues it at ACCOUNT_CHECK_HOUR_UTC. The job id carries the date, so every worker
    that starts, and the run itself, name the same next run: one job a day, however many
    workers, and no cron. A run missed while no worker was up starts when one comes back.
    """
    app = app or current_app
    now = now or datetime.now(timezone.utc)
    at = now.replace(hour=int(app.config["ACCOUNT_CHECK_HOUR_UTC"]), minute=0, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return _schedule_once(app, "low", "inbox.jobs.refresh_tokens", f"refresh-tokens_{at:%Y-%m-%d}", at,
                          result_ttl=7 * 24 * 3600)


def _schedule_once(app, queue_name: str, func: str, name: str, at: datetime, *, result_ttl: int) -> Job:
    """Put `func` on RQ's scheduler at `at` under an id made from `name`, unless it is there.

    Two workers starting at once may both get past the fetch: same id, same time, still
    one job.
    """
    queue = get_queue(queue_name, app)
    job_id = re.sub(r"[^A-Za-z0-9_-]", "_", f"{app.config['REDIS_NAMESPACE']}_{name}")
    try:
        return Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError:
        pass
    return queue.enqueue_at(at, func, job_id=job_id, job_timeout=1800, result_ttl=result_ttl,
                            failure_ttl=7 * 24 * 3600)
