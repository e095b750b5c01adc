"""The background worker: RQ in the app context, with a heartbeat /healthz can see."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from rq import SimpleWorker, Worker
from rq.timeouts import TimerDeathPenalty

from . import create_app
from .extensions import db, get_redis, rkey
from .jobs import all_queues

log = logging.getLogger(__name__)


def _reset_connections_in_child() -> None:
    # A forked horse must not share the parent's database sockets.
    for engine in db.engines.values():
        engine.dispose(close=False)


class ThreadWorker(SimpleWorker):
    """Runs jobs in its own thread (tests and `inbox demo`): timeouts by timer, not SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):  # signals belong to the main thread
        pass


def heartbeat(app, name: str, stop: threading.Event) -> None:
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


def run_worker(*, burst: bool = False, name: str | None = None, app=None) -> int:
    """Work the app's queues in the app context; returns an exit status."""
    app = app or create_app()
    name = name or f"worker.{os.getpid()}"
    # Until RQ installs its own handlers, SIGTERM still unwinds through `finally`.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with app.app_context():
        os.register_at_fork(after_in_child=_reset_connections_in_child)
        stop = threading.Event()
        beat = threading.Thread(target=heartbeat, args=(app, name, stop), daemon=True)
        beat.start()
        try:
            if not burst:
                from .jobs import schedule_account_checks, schedule_delivery_recovery

                schedule_account_checks(app)  # the daily token and webhook check, without cron
                schedule_delivery_recovery(app)  # interrupted webhook deliveries, every few minutes
            worker = Worker(all_queues(app), connection=get_redis(app), name=f"{app.config['REDIS_NAMESPACE']}.{name}")
            worker.work(burst=burst, with_scheduler=not burst, logging_level="INFO")
        finally:
            stop.set()
            beat.join(timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_worker())
