"""The background worker: RQ in the app context, with a heartbeat /healthz can see.

Started by `inbox worker` (and `python worker.py`, the same command), and by `inbox run`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from flask import Flask
from rq import Worker

from . import logs, metrics, queue
from .services import applier
from .extensions import db, get_redis, rkey

log = logging.getLogger(__name__)


def _reset_connections_in_child() -> None:
    # A forked horse must not share the parent's database sockets.
    for engine in db.engines.values():
        engine.dispose(close=False)
    metrics.mark_job_process(os.getppid())


class InboxWorker(Worker):
    """RQ's worker, counting each job by task and outcome in the job's own process."""

    def perform_job(self, job, job_queue, *args, **kwargs) -> bool:
        started = time.perf_counter()
        done = super().perform_job(job, job_queue, *args, **kwargs)
        task = (job.func_name or "unknown").removeprefix(queue.TASKS)
        metrics.job_finished(task, "finished" if done else "failed", time.perf_counter() - started)
        return done


def heartbeat(app: Flask, name: str, stop: threading.Event) -> None:
    """Tell /healthz this worker is alive, every few seconds, until stopped."""
    interval = app.config["WORKER_HEARTBEAT_SECONDS"]
    key = rkey("worker", "heartbeat", name, app=app)
    r = get_redis(app)
    while not stop.is_set():
        try:
            r.set(key, "1", ex=interval * 3)
        except Exception:
            log.warning("worker heartbeat failed", exc_info=True)
        stop.wait(interval)
    try:
        r.delete(key)
    except Exception:
        pass


def run_worker(app: Flask, *, burst: bool = False, name: str | None = None) -> int:
    """Work the app's queues in the app context; returns an exit status."""
    name = name or f"worker.{os.getpid()}"
    os.environ[logs.PROCESS_VARIABLE] = "worker"
    metrics.prepare_directory()
    # Until RQ installs its own handlers, SIGTERM still unwinds through `finally`.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with app.app_context():
        os.register_at_fork(after_in_child=_reset_connections_in_child)
        stop = threading.Event()
        beat = threading.Thread(target=heartbeat, args=(app, name, stop), daemon=True)
        beat.start()
        # The applier beside RQ: it applies stored webhook deliveries (services/applier.py).
        appliers = [] if burst else [applier.start_applier(app, stop)]
        try:
            if not burst:
                queue.schedule_daily_check(app)  # the daily token and webhook check, without cron
                queue.schedule_recovery(app)  # interrupted webhook deliveries, every few minutes
            worker = InboxWorker(queue.all_queues(app), connection=get_redis(app),
                            name=f"{app.config['REDIS_NAMESPACE']}.{name}")
            worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO")
        finally:
            stop.set()
            beat.join(timeout=2)
            for thread in appliers:
                thread.join(timeout=10)
    return 0
