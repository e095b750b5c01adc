"""Run queued RQ jobs for real, in this process: a burst of the app's queues, or a worker in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from inbox.extensions import get_redis
from inbox.jobs import all_queues
from inbox.worker import ThreadWorker


def run_queued_jobs(app, *, max_rounds: int = 10) -> int:
    """Work until the queues are empty (jobs may enqueue jobs); returns how many ran."""
    ran = 0
    with app.app_context():
        for _ in range(max_rounds):
            queues = all_queues(app)
            pending = sum(q.count for q in queues)
            if not pending:
                break
            worker = SimpleWorker(queues, connection=get_redis(app))
            worker.work(burst=True, logging_level="WARNING")
            ran += pending
    return ran


def failed_jobs(app) -> list:
    """Jobs that raised, with their tracebacks, for assertions."""
    with app.app_context():
        out = []
        for queue in all_queues(app):
            registry = FailedJobRegistry(queue=queue)
            for job_id in registry.get_job_ids():
                job = queue.fetch_job(job_id)
                if job is not None:
                    out.append(job)
        return out


@contextmanager
def background_worker(app):
    """A worker taking jobs in a thread while the test watches, as `inbox run` has one."""
    stop = threading.Event()

    def work() -> None:
        with app.app_context():
            while not stop.is_set():
                queues = all_queues(app)
                if any(q.count for q in queues):
                    ThreadWorker(queues, connection=get_redis(app)).work(burst=True, logging_level="WARNING")
                time.sleep(0.1)  # an idle worker looks at its queues again a moment later

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
