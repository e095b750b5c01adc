"""The RQ queues: names, the one way to enqueue, and the periodic schedule.

Services enqueue a task by its dotted name (`enqueue("inbox.tasks.send_message", 42)`), so
this module imports no service and nothing imports `inbox.tasks` but RQ. A job's id is
made from the task and its arguments (`job_id`), so the same work asked for twice, from
anywhere, is one job: while it is queued, scheduled or running, asking again returns it.
Enqueue only after the rows the job reads are committed (`extensions.on_commit`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from flask import current_app
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from .extensions import get_redis

# Queue names, most urgent first: a worker drains them in this order.
QUEUES = ("high", "default", "low")
# A job in one of these states is still to run (or running): asking again is the same job.
PENDING = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
TASKS = "inbox.tasks."


def queue_name(name: str, app=None) -> str:
    """The Redis-side name of one of QUEUES, in this deployment's namespace."""
    app = app or current_app
    return f"{app.config['REDIS_NAMESPACE']}-{name}"


def get_queue(name: str = "default", app=None) -> Queue:
    app = app or current_app
    return Queue(queue_name(name, app), connection=get_redis(app))


def all_queues(app=None) -> list[Queue]:
    return [get_queue(name, app) for name in QUEUES]


def job_id(func: str, *key: object, app=None) -> str:
    """The id of the job that runs task `func` for `key`: job_id("inbox.tasks.fetch_profile", 3, "17841")
    is "inbox-fetch_profile-3-17841" (namespaced; RQ takes only letters, digits, "_" and "-")."""
    app = app or current_app
    if not func.startswith(TASKS):
        raise ValueError(f"{func!r} is not a task in inbox.tasks")
    name = "-".join([app.config["REDIS_NAMESPACE"], func.removeprefix(TASKS), *map(str, key)])
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def enqueue(func: str, *args: object, key: tuple | None = None, at: datetime | None = None,
            queue: str = "default", timeout: int = 300, retries: int = 0, retry_intervals: list[int] | None = None,
            result_ttl: int = 3600, app=None) -> Job:
    """Run task `func` ("inbox.tasks.name") with `args` once, now or `at` a time; returns its job.

    The job id is job_id(func, *key), key defaulting to the arguments. A job of that id
    still queued, scheduled or running is returned as it is; one that finished or failed
    is replaced (a new run of the same work). RQ's `unique` makes the check and the
    write one atomic step, so two callers racing still make one job.
    """
    app = app or current_app
    q = get_queue(queue, app)
    jid = job_id(func, *(args if key is None else key), app=app)
    retry = Retry(max=retries, interval=retry_intervals or [10, 60, 300]) if retries else None
    options = dict(args=args, job_id=jid, job_timeout=timeout, retry=retry, result_ttl=result_ttl,
                   failure_ttl=7 * 24 * 3600, unique=True)
    for _ in range(3):
        try:
            if at is None:
                return q.enqueue(func, **options)
            return q.enqueue_at(at, func, **options)
        except DuplicateJobError:
            try:
                existing = Job.fetch(jid, connection=q.connection)
            except NoSuchJobError:  # it expired meanwhile: try again
                continue
            if existing.get_status(refresh=True) in PENDING:
                return existing
            existing.delete()  # a finished or failed run of the same work
    raise RuntimeError(f"could not enqueue {jid}: its id keeps being taken")


# --- The periodic schedule -----------------------------------------------------------------
# RQ's scheduler (the worker runs `with_scheduler=True`; one worker holds its lock) enqueues
# these at their time. The job id names the time slot, so every worker that starts, and
# every run scheduling the next, name the same job: one run per slot however many workers
# there are, and no cron. A run missed while no worker was up starts when one comes back.

def schedule_daily_check(app=None, *, now: datetime | None = None) -> Job:
    """Make sure the next daily check (tokens, webhook subscriptions, orphan files) is scheduled."""
    app = app or current_app
    now = now or datetime.now(timezone.utc)
    at = now.replace(hour=int(app.config["ACCOUNT_CHECK_HOUR_UTC"]), minute=0, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return enqueue("inbox.tasks.daily_check", key=(f"{at:%Y-%m-%d}",), at=at, queue="low", timeout=1800,
                   result_ttl=7 * 24 * 3600, app=app)


def schedule_recovery(app=None, *, now: datetime | None = None) -> Job:
    """Make sure the next recovery (interrupted deliveries, unconfirmed sends) is scheduled."""
    app = app or current_app
    now = now or datetime.now(timezone.utc)
    interval = max(1, int(app.config["WEBHOOK_RECOVER_INTERVAL_SECONDS"]))
    slot = int(now.timestamp()) // interval + 1
    at = datetime.fromtimestamp(slot * interval, timezone.utc)
    return enqueue("inbox.tasks.recovery", key=(slot,), at=at, queue="default", timeout=1800, app=app)
