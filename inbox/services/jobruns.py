"""Background runs staff start and watch: a JobRun row with live progress that always ends.

    run, created = start_or_get_running("refresh_identities", account_id, "inbox.tasks.refresh_identities",
                                        user_id=user.id)          # the running one when there is one

    def refresh_identities(job_run_id):                           # the service behind the RQ job
        with running(job_run_id) as run:
            if run is None:
                return                                            # already ended: nothing to do
            run.progress(0, total)
            ...
            run.finish({"refreshed": n, ...})

Like microblog's Task, a `finally` always ends the run: an exception marks it failed with
the error, a return without finish() too. A worker that dies without unwinding (SIGKILL,
out of memory) stops the run's heartbeat; the next start or status check notices the
silence and ends the run as failed, so a crash never blocks the next run. One run per
(kind, account) at a time: a Redis lock serialises the check-and-create across processes.
Progress is written at most every JOB_PROGRESS_INTERVAL_SECONDS and pushed live as
`job.progress` with the run's id.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select, update

from ..extensions import db, get_redis, rkey
from ..live.publish import publish
from ..models import JobRun, utcnow
from ..queue import enqueue, job_id

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
# A queued run whose RQ job cannot be found is given this long (the enqueue follows the commit).
ENQUEUE_GRACE_SECONDS = 60
# Finished runs stay on the inbox page for this long (they stay in job_runs for good).
RECENT_SECONDS = 3600
DIED = "The run stopped without finishing (the worker died or was restarted). Start it again."


class RunHandle:
    """What a running job uses to report: progress() while it works, finish() at the end."""

    def __init__(self, run: JobRun, app) -> None:
        self.id = run.id
        self.kind = run.kind
        self.account_id = run.account_id
        self.finished = False
        self.done = run.progress_done or 0
        self.total = run.progress_total
        # What finish() records if the run ends by an exception: the service keeps it current.
        self.partial_summary: dict[str, Any] = {}
        self._app = app
        self._written_at = 0.0

    def progress(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        """Record done/total (commits the current transaction) and push it live; throttled."""
        self.done = done
        if total is not None:
            self.total = total
        interval = float(self._app.config["JOB_PROGRESS_INTERVAL_SECONDS"])
        now = time.monotonic()
        last = self.total is not None and done >= self.total
        if not (force or last or now - self._written_at >= interval):
            return
        self._written_at = now
        values: dict[str, Any] = {"progress_done": done}
        if self.total is not None:
            values["progress_total"] = self.total
        db.session.execute(update(JobRun).where(JobRun.id == self.id).values(**values))
        db.session.commit()
        _publish(self.account_id, self.id)

    def finish(self, summary: dict[str, Any] | None = None, *, state: str = "finished",
               error: str | None = None) -> None:
        """End the run with its summary (and error when it failed); commits and pushes."""
        if self.finished:
            return
        values: dict[str, Any] = {"state": state, "summary": summary or {}, "error": error,
                                  "finished_at": utcnow(), "progress_done": self.done}
        if self.total is not None:
            values["progress_total"] = self.total
        db.session.execute(update(JobRun).where(JobRun.id == self.id).values(**values))
        db.session.commit()
        self.finished = True
        _forget_heartbeat(self._app, self.id)
        _publish(self.account_id, self.id)


# --- Starting ------------------------------------------------------------------------

def start_or_get_running(kind: str, account_id: int, func: str, *, user_id: int | None = None,
                         queue: str = "low", enqueue_job: bool = True) -> tuple[JobRun, bool]:
    """The active run of this kind for the account, or a new one (committed, then enqueued).

    Returns (run, created). enqueue_job=False makes the run without an RQ job, for a
    caller that runs it in its own process (the CLI).
    """
    r = get_redis()
    with r.lock(rkey("jobrun", kind, account_id, "start"), timeout=30, blocking_timeout=20):
        active = db.session.scalars(
            select(JobRun).where(JobRun.account_id == account_id, JobRun.kind == kind, JobRun.state.in_(ACTIVE))
            .order_by(JobRun.id.desc())
        ).all()
        for run in active:
            if is_alive(run):
                return run, False
            end_dead(run)
        # A run the CLI works in its own process has no RQ job: its id only has to be unique.
        run = JobRun(kind=kind, account_id=account_id, state="queued", started_by_user_id=user_id,
                     rq_job_id=f"cli-{kind}-{account_id}-{secrets.token_hex(6)}", progress_done=0,
                     created_at=utcnow())
        db.session.add(run)
        db.session.flush()
        if enqueue_job:
            run.rq_job_id = job_id(func, run.id)
        db.session.commit()
    if enqueue_job:
        _enqueue(run, func, queue)
    return run, True


def _enqueue(run: JobRun, func: str, queue: str) -> None:
    try:
        enqueue(func, run.id, queue=queue, timeout=int(current_app.config["JOB_TIMEOUT_SECONDS"]))
    except Exception as exc:  # Redis is down: the run says so instead of waiting forever
        log.exception("could not enqueue run %s", run.id)
        run.state, run.error, run.finished_at = "failed", f"Could not queue the run: {exc}", utcnow()
        db.session.commit()
        return
    _publish(run.account_id, run.id)


# --- Running -------------------------------------------------------------------------

@contextmanager
def running(job_run_id: int) -> Iterator[RunHandle | None]:
    """Mark the run running and hand over its RunHandle; always end it (see the module docstring).

    Yields None when the run does not exist or is no longer queued (ended as dead, or a
    repeat of a finished run): the caller then does nothing.
    """
    app = current_app._get_current_object()
    started = db.session.execute(
        update(JobRun).where(JobRun.id == job_run_id, JobRun.state == "queued")
        .values(state="running", started_at=utcnow())
    ).rowcount
    db.session.commit()
    run = db.session.get(JobRun, job_run_id) if started else None
    if run is None:
        yield None
        return
    handle = RunHandle(run, app)
    beat = _Heartbeat(app, run.id)
    beat.start()
    _publish(run.account_id, run.id)
    try:
        yield handle
    except BaseException as exc:
        db.session.rollback()
        if not handle.finished:
            handle.finish(handle.partial_summary, state="failed", error=describe(exc))
        raise
    finally:
        beat.stop()
        if not handle.finished:
            db.session.rollback()
            handle.finish(handle.partial_summary, state="failed", error="The run ended without a result.")


def describe(exc: BaseException) -> str:
    """A short, human reason for a failed run (tokens never reach exception text)."""
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ == "JobTimeoutException":
        text = f"The run took longer than its time limit ({text})."
    return text[:1000]


class _Heartbeat:
    """A key in Redis that lives while the run's process does (3 missed beats: dead)."""

    def __init__(self, app, run_id: int) -> None:
        self._app = app
        self._key = rkey("jobrun", run_id, "alive", app=app)
        self._interval = float(app.config["JOB_HEARTBEAT_SECONDS"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True)

    def start(self) -> None:
        self._set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _set(self) -> None:
        try:
            get_redis(self._app).set(self._key, "1", px=int(self._interval * 3000))
        except Exception:
            log.warning("run heartbeat failed", exc_info=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            self._set()


def _forget_heartbeat(app, run_id: int) -> None:
    try:
        get_redis(app).delete(rkey("jobrun", run_id, "alive", app=app))
    except Exception:
        pass


# --- Looking at runs -------------------------------------------------------------------

def is_alive(run: JobRun) -> bool:
    """Whether an active run is really being worked on (or about to be)."""
    if run.state == "running":
        return bool(get_redis().exists(rkey("jobrun", run.id, "alive")))
    if run.state != "queued":
        return False
    if run.created_at and utcnow() - run.created_at < timedelta(seconds=ENQUEUE_GRACE_SECONDS):
        return True
    try:
        job = Job.fetch(run.rq_job_id, connection=get_redis())
    except NoSuchJobError:
        return False
    except Exception:  # an id RQ cannot read (a CLI run): only the grace period counts
        return False
    return job.get_status(refresh=True) in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
                                            JobStatus.STARTED)


def end_dead(run: JobRun) -> None:
    """Mark a run whose process died as failed, saying so (committed, pushed live)."""
    ended = db.session.execute(
        update(JobRun).where(JobRun.id == run.id, JobRun.state.in_(ACTIVE))
        .values(state="failed", error=DIED, finished_at=utcnow())
    ).rowcount
    db.session.commit()
    db.session.refresh(run)
    if ended:
        log.warning("run %s (%s) had died; marked failed", run.id, run.kind)
        _publish(run.account_id, run.id)


def get_run(account_id: int, run_id: int) -> JobRun | None:
    """One run of the account (None for another account's), ended first if it had died."""
    run = db.session.scalars(select(JobRun).where(JobRun.id == run_id, JobRun.account_id == account_id)).first()
    if run is not None and run.is_active and not is_alive(run):
        end_dead(run)
    return run


def recent_runs(account_id: int, kinds: tuple[str, ...]) -> list[JobRun]:
    """The latest run of each kind when it is active or finished within the last hour."""
    since = utcnow() - timedelta(seconds=RECENT_SECONDS)
    out = []
    for kind in kinds:
        run = db.session.scalars(select(JobRun).where(JobRun.account_id == account_id, JobRun.kind == kind)
                                 .order_by(JobRun.id.desc()).limit(1)).first()
        if run is None:
            continue
        if run.is_active and not is_alive(run):
            end_dead(run)
        if run.is_active or (run.finished_at and run.finished_at >= since):
            out.append(run)
    return out


def _publish(account_id: int | None, run_id: int) -> None:
    if account_id is not None:
        publish(account_id, "job.progress", job_run_id=run_id)
