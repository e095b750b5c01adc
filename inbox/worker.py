"""The background worker: RQ in the app context, a heartbeat /healthz can see, and the reconciler.

Started by `inbox worker` (and `python worker.py`, the same command), and by `inbox run`.
Redis may lose everything: the reconciler thread (`services.obligations`) finds what is owed
in the database every few seconds and enqueues it, including the periodic checks. A worker
killed with SIGKILL leaves its name, its scheduler lock and its started jobs in Redis; the
next worker on the same machine clears what belongs to dead processes at once (elsewhere
they expire within about a minute and a half).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

import redis
from flask import Flask
from rq import Queue, Worker
from rq.scheduler import RQScheduler

from . import logs, metrics, queue
from .extensions import db, get_redis, redis_url, rkey
from .services import applier, obligations, periodic

log = logging.getLogger(__name__)


def _reset_connections_in_child() -> None:
    # A forked horse must not share the parent's database sockets.
    for engine in db.engines.values():
        engine.dispose(close=False)
    metrics.mark_job_process(os.getppid())


class InboxWorker(Worker):
    """RQ's worker, counting each job by task and outcome in the job's own process."""

    # Redis back after an outage: try again within two seconds, not RQ's backoff of up to 60.
    max_connection_wait_time = 2.0

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


def reconcile_loop(app: Flask, stop: threading.Event) -> None:
    """Every RECONCILE_INTERVAL_SECONDS: enqueue what the database says is owed and not running."""
    reconciler = obligations.Reconciler()
    interval = float(app.config["RECONCILE_INTERVAL_SECONDS"])
    while not stop.wait(interval):
        try:
            with app.app_context():
                try:
                    periodic.ensure_schedule()
                    reconciler.run_once()
                finally:
                    db.session.remove()
        except Exception as exc:  # Redis or the database away: the next pass tries again
            log.warning("reconciler pass failed: %s", exc)


def worker_connection(app: Flask) -> redis.Redis:
    """RQ's own client: no socket timeout shorter than its blocking wait.

    redis-py 8 gives every client a 5 s socket timeout; RQ raises it only for connections made
    after it looked, so a pool shared with other threads made an idle worker's blocking wait
    time out every few seconds and back off (jobs then waited up to a minute)."""
    return redis.Redis.from_url(redis_url(app), socket_timeout=None, health_check_interval=30)


def clear_dead_leftovers(connection: redis.Redis, rq_name: str, queue_names: list[str]) -> None:
    """A SIGKILLed worker's name and scheduler locks, when its process is gone from this machine."""
    here = socket.gethostname()
    key = f"rq:worker:{rq_name}"
    hostname, pid = (v.decode() if isinstance(v, bytes) else v for v in connection.hmget(key, "hostname", "pid"))
    if hostname == here and pid and pid.isdigit() and not queue.pid_alive(int(pid)):
        connection.delete(key)
        log.warning("cleared worker name %s left by a killed process %s", rq_name, pid)
    for name in queue_names:
        lock = RQScheduler.get_locking_key(name)
        holder = connection.get(lock)
        if holder is None:
            continue
        holder = holder.decode() if isinstance(holder, bytes) else holder
        owner = {k.decode(): v.decode() for k, v in connection.hgetall(f"rq:scheduler:{holder}").items()}
        dead_here = owner.get("hostname") == here and owner.get("pid", "").isdigit() and not queue.pid_alive(
            int(owner["pid"]))
        if not owner or dead_here:
            # Compare and delete: only the lock still held by the dead scheduler.
            connection.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                            "end return 0", 1, lock, holder)
            log.warning("cleared scheduler lock of %s left by a dead scheduler", name)


def _until_it_works(step, what: str, pause: float = 1.0):
    """Call step until it does not raise (the database or Redis is back); returns its result."""
    while True:
        try:
            return step()
        except Exception as exc:
            log.warning("waiting for %s: %s", what, exc)
            db.session.remove()
            time.sleep(pause)


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
        threads = [beat]
        # The applier beside RQ: it applies stored webhook deliveries (services/applier.py).
        appliers = [] if burst else [applier.start_applier(app, stop)]
        try:
            connection = worker_connection(app)
            queues = [Queue(queue.queue_name(q, app), connection=connection) for q in queue.QUEUES]
            rq_name = f"{app.config['REDIS_NAMESPACE']}.{name}"
            if not burst:
                _until_it_works(periodic.ensure_schedule, "the database")  # the periodic checks, without cron
                db.session.remove()
                reconciler = threading.Thread(target=reconcile_loop, args=(app, stop), name="inbox-reconciler",
                                              daemon=True)
                reconciler.start()
                threads.append(reconciler)
            maintenance = int(app.config["WORKER_MAINTENANCE_SECONDS"])
            while True:
                worker = None
                try:
                    if not burst:
                        clear_dead_leftovers(connection, rq_name, [q.name for q in queues])
                    # worker_ttl bounds the blocking wait (ttl - 15 s), so RQ's upkeep runs about this often.
                    worker = InboxWorker(queues, connection=connection, name=rq_name,
                                         maintenance_interval=maintenance, worker_ttl=max(maintenance + 15, 30))
                    worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO")
                except redis.RedisError as exc:
                    log.warning("worker could not reach Redis (%s); trying again", exc)
                # RQ's handlers are gone with its loop: SIGTERM ends this process again.
                signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
                # SIGTERM/SIGINT reached RQ (its warm shutdown marks the date even when idle): stop.
                asked = worker is not None and (worker._stop_requested
                                                or getattr(worker, "_shutdown_requested_date", None) is not None)
                if burst or asked:
                    break
                # RQ gives up when Redis goes away mid-job; Redis may come back empty or not at all
                # for a while. Work again as soon as it answers (the reconciler re-enqueues what was lost).
                log.warning("the RQ worker stopped without being asked to; starting it again")
                _until_it_works(connection.ping, "Redis")
                try:
                    connection.delete(f"rq:worker:{rq_name}")  # our own name, left by the loop that lost Redis
                except redis.RedisError:
                    pass
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=2)
            for thread in appliers:
                thread.join(timeout=10)
    return 0
