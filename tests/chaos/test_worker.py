"""The worker itself under faults: an idle worker starts a job within a second (redis-py 8 /
rq 3), and a SIGKILLed worker's replacement (same name) starts and runs scheduled work at once."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from rq.job import Job

from inbox.queue import enqueue, get_queue
from tests.support.stack import eventually


def started_after(app, job: Job, timeout: float = 30) -> float:
    """Seconds between a job's enqueue and its start."""
    with app.app_context():
        eventually(lambda: job.get_status(refresh=True) == "finished", timeout=timeout, what=f"job {job.id}")
        job.refresh()
        return (job.started_at - job.enqueued_at).total_seconds()


def test_an_idle_worker_starts_a_job_within_a_second(app, start_worker):
    start_worker("idle", settings={"WORKER_HEARTBEAT_SECONDS": 10})  # production's heartbeat
    waits = []
    # Idle past redis-py 8's default 5 s socket timeout, long enough for RQ's backoff after it
    # (1, 2, 4 s…) to be under way when the job comes.
    for attempt, idle in enumerate((19.5, 11.7)):
        time.sleep(idle)
        with app.app_context():
            job = enqueue("inbox.tasks.send_message", 10_000 + attempt, queue="high")
        waits.append(started_after(app, job))
    print(f"idle worker: job start delays {waits} s")
    assert max(waits) < 1.0, waits


def test_a_killed_worker_with_a_fixed_name_comes_back_and_runs_scheduled_work(app, start_worker):
    first = start_worker("fixed")
    time.sleep(1.5)  # its scheduler holds the lock
    first.kill()
    again = start_worker("fixed")  # the same --name: must not refuse to start
    with app.app_context():
        job = enqueue("inbox.tasks.send_message", 20_000, queue="high",
                      at=datetime.now(timezone.utc) + timedelta(seconds=1))
        assert job.id in get_queue("high").scheduled_job_registry.get_job_ids()
    with app.app_context():
        took = eventually(lambda: job.get_status(refresh=True) == "finished", timeout=20,
                          what="the scheduled job to run after the kill")
    print(f"worker killed and restarted under the same name: a scheduled job ran {took} s later")
    assert again.alive()
