"""The RQ queues: names, the one way to enqueue, and the periodic schedule.

Services enqueue a task by its dotted name (`enqueue("inbox.tasks.send_message", 42)`), so
this module imports no service and nothing imports `inbox.tasks` but RQ. A job's id is
made from the task and its arguments (`job_id`), so the same work asked for twice, from
anywhere, is one job: while it is queued, scheduled or running, asking again returns it.
Enqueue only after the rows the job reads are committed (`extensions.on_commit`).
"""

from __future__ import annotations

import os
import re
import socket
from datetime import datetime

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
            status = existing.get_status(refresh=True)
            if status in PENDING and not (status == JobStatus.STARTED and not worker_alive(
                    existing.worker_name, q.connection)):
                return existing
            # A finished or failed run of the same work, or one whose worker was killed mid-run.
            existing.delete()
    raise RuntimeError(f"could not enqueue {jid}: its id keeps being taken")


def worker_alive(name: str | None, connection) -> bool:
    """Whether the RQ worker `name` still lives: its key is there and, on this machine, its process."""
    if not name:
        return True  # RQ did not say who runs it: trust the status
    data = connection.hmget(f"rq:worker:{name}", "hostname", "pid", "death")
    hostname, pid, death = (value.decode() if isinstance(value, bytes) else value for value in data)
    if death or (hostname is None and pid is None):
        return False
    if hostname == socket.gethostname() and pid and pid.isdigit():
        return pid_alive(int(pid))
    return True  # another machine: its key expires when it stops beating


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie nobody reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return True
